"""A GGUF language model driven through llama.cpp's C API, with embeddings injected as tokens.

Why not ``llama_cpp.Llama``: its prompt path only takes token ids. Region
tokens are *embeddings* (the projector's output), and llama.cpp takes those
through a ``llama_batch`` whose ``embd`` field is set — the same mechanism its
multimodal helper (mtmd) uses for image embeddings. This module builds such
batches itself, next to ordinary token batches, in one sequence:

    prompt prefix (tokens) | K region embeddings | prompt suffix (tokens) -> answer

A segment can also be an image tokenized by llama.cpp's multimodal library
(:class:`edge.assistant.region_mtmd.ImageSegment`, with an mmproj): it brings its
own prefill steps (wrapper text, vision encoder, image embeddings at mtmd's
positions), evaluated on this context in the same sequence.

Positions. Plain RoPE models take one position per token. M-RoPE models
(Qwen2-VL, Qwen3.5: ``llama_model_rope_type`` MROPE/IMROPE) take 4 positions
per *embedding* (section-major: ``pos[j * n + i]``) while a token batch takes
one that llama.cpp broadcasts to all 4 sections. Region tokens are text-like
(no image grid), so each gets its sequential position in all 4 sections —
exactly what a token at that place would get, and what transformers computes
for ``inputs_embeds`` without an image grid (the parity tests check it).

Yielding: every step of the prefill (16 tokens, the K region embeddings, an
image's encoder pass and each 16-embedding piece of its decode) and every
generated token is preceded by ``should_pause()`` checks, so the injected
prefill yields to the real-time lane like the text prompt does.

Extra weight buffers (llama.cpp's repack/AMX CPU kernels) are off by default:
on a CPU with AMX the AMX matmul crashed (SIGSEGV in ``ggml_backend_amx_mul_mat``)
on Q8_0 files — a tiny Qwen3.5, and a tiny Qwen2 with wider random weights —
measured with llama-cpp-python 0.3.36. ``extra_buffers=True`` turns them on.
"""

from __future__ import annotations

import ctypes
import struct
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from edge.assistant.gguf_check import verify_gguf
from edge.errors import ModelLoadError

PREFILL_CHUNK = 16  # tokens evaluated between two checks of the lane's busy flag
_HYBRID_ARCHS = ("qwen35", "qwen35moe", "qwen3next")

Segment = Any  # token ids (1-D ints), embeddings ([n, n_embd] float32), or an object with prefill_steps(lm, chunk)
Step = Callable[[bool], None]  # one prefill step; the argument: keep the logits of its last position


def _llama_cpp():  # type: ignore[no-untyped-def]
    try:
        import llama_cpp
    except ImportError as exc:
        raise ModelLoadError("llama-cpp-python is not installed (pip install 'iad-edge[assistant]')") from exc
    return llama_cpp


def gguf_architecture(path: str | Path) -> str:
    """``general.architecture`` from a GGUF file's key/value section (standard library only; '' if not found)."""

    with open(path, "rb") as fh:
        head = fh.read(24)
        if len(head) < 24 or head[:4] != b"GGUF":
            raise ModelLoadError(f"{path}: not a GGUF file")
        _, _, _, n_kv = struct.unpack("<4sIQQ", head)
        for _ in range(min(n_kv, 64)):
            (klen,) = struct.unpack("<Q", fh.read(8))
            key = fh.read(klen).decode("utf-8", "replace")
            (vtype,) = struct.unpack("<I", fh.read(4))
            if vtype != 8:  # only strings are read; general.architecture is the first key in practice
                return ""
            (vlen,) = struct.unpack("<Q", fh.read(8))
            value = fh.read(vlen).decode("utf-8", "replace")
            if key == "general.architecture":
                return value
    return ""


class RegionLM:
    """One llama.cpp model + context, one sequence, greedy or grammar-constrained decoding."""

    def __init__(
        self,
        model: str | Path,
        *,
        n_ctx: int = 512,
        threads: int = 1,
        gpu_layers: int = 0,
        extra_buffers: bool = False,
        check_sha256: bool = True,
        verify: bool = True,
        verbose: bool = False,
    ):

        self.path = Path(model)
        if verify:
            verify_gguf(self.path, check_sha256=check_sha256)
        self._lc = lc = _llama_cpp()
        self.arch = gguf_architecture(self.path)
        try:
            from llama_cpp._logger import set_verbose

            set_verbose(verbose)  # llama.cpp's load/graph chatter goes to stderr otherwise
        except ImportError:  # pragma: no cover - older llama-cpp-python
            pass
        lc.llama_backend_init()
        mp = lc.llama_model_default_params()
        mp.n_gpu_layers = gpu_layers
        mp.use_extra_bufts = bool(extra_buffers)
        self.model = lc.llama_model_load_from_file(str(self.path).encode(), mp)
        if not self.model:
            raise ModelLoadError(f"{self.path}: llama.cpp could not load it")
        n_train = int(lc.llama_model_n_ctx_train(self.model))
        if n_train > 0:  # more than the model was trained for is useless here (and llama.cpp warns on stderr)
            n_ctx = min(n_ctx, n_train)
        cp = lc.llama_context_default_params()
        cp.n_ctx = n_ctx
        cp.n_batch = n_ctx
        cp.n_ubatch = min(n_ctx, 512)
        cp.n_threads = cp.n_threads_batch = threads
        cp.n_seq_max = 1
        self.ctx = lc.llama_init_from_model(self.model, cp)
        if not self.ctx:
            lc.llama_model_free(self.model)
            raise ModelLoadError(f"{self.path}: llama.cpp could not create a context (n_ctx {n_ctx})")
        self.vocab = lc.llama_model_get_vocab(self.model)
        self.n_embd = int(lc.llama_model_n_embd(self.model))
        # width of input embeddings: an mmproj's output can be wider than n_embd (e.g. Qwen3-VL's deepstack)
        n_inp = getattr(lc, "llama_model_n_embd_inp", None)
        self.n_embd_inp = int(n_inp(self.model)) if n_inp is not None else self.n_embd
        self.n_vocab = int(lc.llama_vocab_n_tokens(self.vocab))
        self.n_ctx = n_ctx
        rope = int(lc.llama_model_rope_type(self.model))
        self.n_pos_per_embd = 4 if rope in (lc.LLAMA_ROPE_TYPE_MROPE, lc.LLAMA_ROPE_TYPE_IMROPE) else 1
        self.n_past = 0  # next position of the sequence
        self.n_kv = 0  # cells of the sequence in the KV cache (an M-RoPE image takes more cells than positions)

    # ------------------------------------------------------------------ text
    def tokenize(self, text: str, special: bool = True) -> list[int]:
        """Token ids of ``text`` (no BOS added; ``special``: parse ``<|im_start|>``-style tokens)."""
        data = text.encode()
        cap = len(data) + 8
        buf = (self._lc.llama_token * cap)()
        n = self._lc.llama_tokenize(self.vocab, data, len(data), buf, cap, False, special)
        if n < 0:
            buf = (self._lc.llama_token * -n)()
            n = self._lc.llama_tokenize(self.vocab, data, len(data), buf, -n, False, special)
        return [int(t) for t in buf[:n]]

    def piece(self, token: int) -> bytes:
        buf = ctypes.create_string_buffer(64)
        n = self._lc.llama_token_to_piece(self.vocab, token, buf, 64, 0, False)
        return buf.raw[: max(0, n)]

    def detokenize(self, tokens: Sequence[int]) -> str:
        return b"".join(self.piece(t) for t in tokens).decode("utf-8", errors="replace")

    def meta(self, key: str) -> str:
        """A GGUF metadata value as text ('' when absent)."""
        buf = ctypes.create_string_buffer(1 << 16)
        n = self._lc.llama_model_meta_val_str(self.model, key.encode(), buf, len(buf))
        return buf.value.decode("utf-8", "replace") if n >= 0 else ""

    def is_eog(self, token: int) -> bool:
        return bool(self._lc.llama_vocab_is_eog(self.vocab, token))

    # ------------------------------------------------------------------ decoding
    def reset(self) -> None:
        """Forget the sequence (KV cache and recurrent state)."""
        self._lc.llama_memory_clear(self._lc.llama_get_memory(self.ctx), True)
        self.n_past = 0
        self.n_kv = 0

    def _decode(self, tokens: Sequence[int] | None, embd: np.ndarray | None, want_logits: bool,
                positions: np.ndarray | None = None, advance: int | None = None) -> None:
        """One ``llama_decode`` of tokens or embeddings at the next positions (or ``positions``: section-major,
        ``n_pos_per_embd * n`` values, for an image's grid), then ``n_past += advance`` (default: n)."""
        lc = self._lc
        n = len(tokens) if tokens is not None else int(embd.shape[0])  # type: ignore[union-attr]
        if n == 0:
            return
        if self.n_kv + n > self.n_ctx:
            raise RuntimeError(f"prompt of {self.n_kv + n} tokens does not fit the context ({self.n_ctx})")
        batch = lc.llama_batch()
        keep: list[Any] = []
        batch.n_tokens = n
        if tokens is not None:
            tok = (lc.llama_token * n)(*tokens)
            keep.append(tok)
            batch.token = tok
            positions = np.arange(self.n_past, self.n_past + n, dtype=np.int32)
        else:
            e = np.ascontiguousarray(embd, dtype=np.float32)
            if e.ndim != 2 or e.shape[1] not in (self.n_embd, self.n_embd_inp):
                raise ValueError(f"embeddings of shape {e.shape} do not match the model's hidden size {self.n_embd}")
            if e.shape[1] < self.n_embd_inp:  # region tokens on a model with wider inputs (deepstack): zero extra slices (untested)
                e = np.pad(e, ((0, 0), (0, self.n_embd_inp - e.shape[1])))
            keep.append(e)
            batch.embd = e.ctypes.data_as(ctypes.POINTER(ctypes.c_float))
            if positions is None:
                # M-RoPE: n_pos_per_embd positions per embedding, section-major; text-like tokens: the same in every section
                positions = np.tile(np.arange(self.n_past, self.n_past + n, dtype=np.int32), self.n_pos_per_embd)
            elif positions.size != n * self.n_pos_per_embd:
                raise ValueError(f"{positions.size} positions for {n} embeddings ({self.n_pos_per_embd} per embedding)")
        positions = np.ascontiguousarray(positions, dtype=np.int32)
        keep.append(positions)
        batch.pos = positions.ctypes.data_as(ctypes.POINTER(lc.llama_pos))
        n_seq = (ctypes.c_int32 * n)(*([1] * n))
        seq0 = (lc.llama_seq_id * 1)(0)
        seq_ids = (ctypes.POINTER(lc.llama_seq_id) * (n + 1))(*([ctypes.cast(seq0, ctypes.POINTER(lc.llama_seq_id))] * n), None)
        logits = (ctypes.c_int8 * n)(*([0] * (n - 1) + [1 if want_logits else 0]))
        keep += [n_seq, seq0, seq_ids, logits]
        batch.n_seq_id, batch.seq_id, batch.logits = n_seq, seq_ids, logits
        rc = lc.llama_decode(self.ctx, batch)
        if rc != 0:
            raise RuntimeError(f"llama_decode failed (return code {rc})")
        self.n_past += n if advance is None else advance
        self.n_kv += n

    def prefill(self, segments: Sequence[Segment], should_pause: Callable[[], bool] | None = None,
                chunk: int = PREFILL_CHUNK) -> None:
        """Evaluate the prompt: token segments in ``chunk``-token pieces, embedding segments in one batch each,
        image segments in their own steps (``prefill_steps``: encoder pass, then ``chunk``-embedding pieces).

        ``should_pause`` is polled (and waited on while true) before every step.
        The logits of the last prompt position are kept for the first answer token.
        """
        steps: list[Step] = []
        for seg in segments:
            if isinstance(seg, np.ndarray) and seg.ndim == 2:
                if len(seg):
                    steps.append(lambda last, e=seg: self._decode(None, e, last))
            elif hasattr(seg, "prefill_steps"):
                steps += seg.prefill_steps(self, chunk)
            else:
                ids = [int(t) for t in seg]
                steps += [lambda last, t=ids[i : i + chunk]: self._decode(t, None, last) for i in range(0, len(ids), chunk)]
        for i, step in enumerate(steps):
            if should_pause is not None:
                should_pause()
            step(i == len(steps) - 1)

    def logits(self) -> np.ndarray:
        """Logits of the last evaluated position (float32 copy, [n_vocab])."""
        ptr = self._lc.llama_get_logits_ith(self.ctx, -1)
        return np.ctypeslib.as_array(ptr, shape=(self.n_vocab,)).copy()

    def generate(
        self,
        segments: Sequence[Segment],
        max_tokens: int,
        grammar: str | None = None,
        should_pause: Callable[[], bool] | None = None,
        deadline: float | None = None,
        keep_logits: bool = False,
        stop_at_eog: bool = True,
    ) -> dict[str, Any]:
        """Prefill ``segments`` then decode greedily (grammar-constrained when ``grammar`` is GBNF text).

        Returns ``tokens``, ``text``, ``finish`` ('stop', 'length', 'budget'),
        ``prefill_ms``, ``first_token_ms``, ``decode_ms`` and, with ``keep_logits``,
        ``logits`` ([steps, n_vocab]: the distribution each token was chosen from).
        """
        lc = self._lc
        t0 = time.perf_counter()
        self.reset()
        self.prefill(segments, should_pause)
        t_prefill = time.perf_counter()
        sampler = None
        if grammar is not None:
            sampler = lc.llama_sampler_chain_init(lc.llama_sampler_chain_default_params())
            g = lc.llama_sampler_init_grammar(self.vocab, grammar.encode(), b"root")
            if not g:
                lc.llama_sampler_free(sampler)
                raise ValueError("llama.cpp rejected the answer grammar")
            lc.llama_sampler_chain_add(sampler, g)
            lc.llama_sampler_chain_add(sampler, lc.llama_sampler_init_greedy())
        out: list[int] = []
        kept: list[np.ndarray] = []
        finish, t_first = "length", None
        try:
            for _ in range(max_tokens):
                if keep_logits:
                    kept.append(self.logits())
                if sampler is not None:
                    token = int(lc.llama_sampler_sample(sampler, self.ctx, -1))
                else:
                    token = int(np.argmax(kept[-1] if keep_logits else self.logits()))
                if t_first is None:
                    t_first = time.perf_counter()
                if stop_at_eog and self.is_eog(token):
                    finish = "stop"
                    break
                out.append(token)
                if deadline is not None and time.monotonic() >= deadline:
                    finish = "budget"
                    break
                if should_pause is not None:
                    should_pause()
                self._decode([token], None, want_logits=True)
        finally:
            if sampler is not None:
                lc.llama_sampler_free(sampler)
        t_end = time.perf_counter()
        result: dict[str, Any] = {
            "tokens": out, "text": self.detokenize(out), "finish": finish,
            "prefill_ms": round((t_prefill - t0) * 1000, 3),
            "first_token_ms": round(((t_first or t_end) - t0) * 1000, 3),
            "decode_ms": round((t_end - t_prefill) * 1000, 3),
        }
        if keep_logits:
            result["logits"] = np.stack(kept) if kept else np.zeros((0, self.n_vocab), np.float32)
        return result

    def close(self) -> None:
        lc = self._lc
        if getattr(self, "ctx", None):
            lc.llama_free(self.ctx)
            self.ctx = None
        if getattr(self, "model", None):
            lc.llama_model_free(self.model)
            self.model = None

    def __del__(self) -> None:  # pragma: no cover - best effort
        try:
            self.close()
        except Exception:
            pass
