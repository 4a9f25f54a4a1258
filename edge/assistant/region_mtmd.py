"""The region's image crop in the same llama.cpp sequence as its region tokens (llama.cpp's mtmd library).

Prompt with an mmproj beside the projector::

    prefix tokens | K region embeddings | image (crop [, overlay]) | suffix tokens -> grammar answer

The image goes through llama.cpp's multimodal library (mtmd) as llama-cpp-python
exposes it (``llama_cpp.mtmd_cpp``): ``mtmd_tokenize`` turns the marker + bitmap
into chunks (the model's own wrapper text, e.g. ``<|vision_start|>`` ...
``<|vision_end|>``, and the image chunk), ``mtmd_encode_chunk`` runs the vision
tower, and the image embeddings are decoded on the *same* ``llama_context`` as
the rest of the sequence (:class:`~edge.assistant.region_lm.RegionLM`), at the
positions mtmd assigns (``mtmd_helper_image_get_decoder_pos``: for M-RoPE models
a 2-D grid whose temporal section starts at ``n_past``). The sequence then
advances by the chunk's ``n_pos`` (what mtmd reports; for an M-RoPE image it is
not its token count), exactly as ``mtmd_helper_eval_chunks`` does — the parity
test compares the two paths logit by logit.

Why not ``mtmd_helper_eval_chunk_single`` for the image: it encodes and decodes
in one call. Here encoding and every ``chunk``-row piece of the image decode are
separate prefill steps, so the busy-flag wait (``should_pause``) runs before the
vision tower and between image pieces as it does before every text chunk; hard
yield (SIGSTOP) covers each step unchanged. Models whose image needs non-causal
attention (mtmd says so per chunk) are decoded in one piece with causal attention
off, as mtmd's helper does.
"""

from __future__ import annotations

import ctypes
from pathlib import Path
from typing import Any

import numpy as np

from edge.assistant.gguf_check import verify_gguf
from edge.assistant.region_lm import RegionLM, Step
from edge.errors import ModelLoadError


def _mtmd():  # type: ignore[no-untyped-def]
    try:
        from llama_cpp import mtmd_cpp
    except (ImportError, OSError) as exc:
        raise ModelLoadError(f"llama-cpp-python without its multimodal library (mtmd): {exc}") from exc
    return mtmd_cpp


_QUIET: list[Any] = []  # the log callbacks handed to C, kept alive for the process
# Logged by llama.cpp's recurrent memory (the linear-attention layers of Qwen3.5) for every M-RoPE image: its
# embeddings share one temporal position, so the last position of the batch is not "previous + n". The recurrent
# state does not use positions; llama.cpp's own multimodal path logs the same (and llama-cpp-python prints
# llama.cpp's warnings as errors), two lines per image and per token after it on the engineer's terminal.
_BENIGN = b"find_slot: non-consecutive token position"


def _quiet_mtmd(mt: Any, lc: Any) -> None:
    """Silence mtmd's and its helper's per-image log lines (encoding/decoding timings) and llama.cpp's benign
    position warning for image embeddings, unless verbose; every other llama.cpp message is passed on."""
    if _QUIET:
        return
    cb = lc.llama_log_callback(lambda level, text, user_data: None)
    _QUIET.append(cb)
    for name in ("mtmd_log_set", "mtmd_helper_log_set"):
        fn = getattr(mt, name, None)
        if fn is not None:
            fn(cb, None)
    try:
        from llama_cpp._logger import llama_log_callback as forward
    except ImportError:  # pragma: no cover - older llama-cpp-python
        return

    def llama_log(level: int, text: bytes, user_data: Any) -> None:
        if not (text or b"").startswith(_BENIGN):
            forward(level, text, user_data)

    filtered = lc.llama_log_callback(llama_log)
    _QUIET.append(filtered)
    lc.llama_log_set(filtered, None)


def check_mmproj(mmproj: str | Path, check_sha256: bool = True) -> Path:
    """The mmproj file exists and is a sound GGUF (header; size and sha256 against its export's manifest.json):
    checked before any model is loaded, so a wrong path is one clear line, not llama.cpp's output."""
    path = Path(mmproj)
    if not path.is_file():
        raise ModelLoadError(f"{path}: mmproj (vision projector) file not found")
    verify_gguf(path, check_sha256=check_sha256)
    return path


class ImageInput:
    """An mmproj loaded by mtmd for a :class:`RegionLM`'s text model; turns images into prompt segments."""

    def __init__(self, lm: RegionLM, mmproj: str | Path, *, threads: int = 1, use_gpu: bool = False,
                 check_sha256: bool = True, verbose: bool = False):
        self.path = check_mmproj(mmproj, check_sha256)
        self.lm = lm
        self._mt = mt = _mtmd()
        if not verbose:
            _quiet_mtmd(mt, lm._lc)
        params = mt.mtmd_context_params_default()
        params.use_gpu = bool(use_gpu)
        params.print_timings = bool(verbose)
        params.n_threads = int(threads)
        params.warmup = False  # one tiny crop per region: a warm-up pass would cost as much as the work
        self.ctx = mt.mtmd_init_from_file(str(self.path).encode(), lm.model, params)
        if not self.ctx:
            raise ModelLoadError(
                f"{self.path}: llama.cpp's multimodal library (mtmd) could not load this mmproj for {lm.path.name} "
                "(not an mmproj, or a vision projector of another model: use the mmproj exported with the text GGUF)")
        if not mt.mtmd_support_vision(self.ctx):
            self.close()
            raise ModelLoadError(f"{self.path}: this mmproj has no vision encoder (audio only?)")
        self.mrope = bool(mt.mtmd_decode_use_mrope(self.ctx))
        if self.mrope != (lm.n_pos_per_embd == 4):
            self.close()
            raise ModelLoadError(f"{self.path}: this mmproj expects {'M-RoPE' if self.mrope else 'plain RoPE'} positions, "
                                 f"{lm.path.name} uses the other: not a pair from one export")
        self.marker = mt.mtmd_default_marker()

    def segment(self, image: np.ndarray) -> ImageSegment:
        """One image (BGR or grey uint8, as :func:`edge.assistant.evidence.region_images` gives it) as a segment."""
        mt = self._mt
        img = np.asarray(image)
        if img.dtype != np.uint8:
            raise ValueError(f"image of dtype {img.dtype}: an 8-bit crop is expected")
        if img.ndim == 2:
            img = np.repeat(img[:, :, None], 3, axis=2)
        elif img.ndim == 3 and img.shape[2] == 4:
            img = img[:, :, :3]
        if img.ndim != 3 or img.shape[2] != 3:
            raise ValueError(f"image of shape {img.shape}: H x W x 3 is expected")
        rgb = np.ascontiguousarray(img[:, :, ::-1])  # OpenCV's BGR -> the RGB mtmd expects
        h, w = rgb.shape[:2]
        bitmap = mt.mtmd_bitmap_init(w, h, rgb.ctypes.data_as(ctypes.POINTER(ctypes.c_uint8)))
        if not bitmap:
            raise RuntimeError(f"mtmd could not take a {w}x{h} image")
        chunks = mt.mtmd_input_chunks_init()
        try:
            text = mt.mtmd_input_text()
            text.text, text.text_len = self.marker, len(self.marker)
            text.add_special, text.parse_special = False, True
            bitmaps = (mt.mtmd_bitmap_p_ctypes * 1)(bitmap)
            rc = mt.mtmd_tokenize(self.ctx, chunks, ctypes.byref(text), bitmaps, 1)
        finally:
            mt.mtmd_bitmap_free(bitmap)
        if rc != 0:
            mt.mtmd_input_chunks_free(chunks)
            raise RuntimeError(f"mtmd could not tokenize a {w}x{h} image (return code {rc})")
        return ImageSegment(self, chunks)

    def close(self) -> None:
        if getattr(self, "ctx", None):
            self._mt.mtmd_free(self.ctx)
            self.ctx = None

    def __del__(self) -> None:  # pragma: no cover - best effort
        try:
            self.close()
        except Exception:
            pass


class ImageSegment:
    """An image tokenized by mtmd: wrapper text chunks and one image chunk, evaluated by :meth:`RegionLM.prefill`.

    ``n_tokens``: KV cells it takes; ``n_pos``: positions it advances the sequence by (mtmd's count).
    """

    def __init__(self, images: ImageInput, chunks: Any):
        self._images = images
        self._mt = mt = images._mt
        self._chunks = chunks
        self.parts: list[tuple[str, Any]] = []  # ("text", [ids]) / ("image", chunk pointer)
        self.n_tokens = self.n_pos = 0
        for i in range(int(mt.mtmd_input_chunks_size(chunks))):
            chunk = mt.mtmd_input_chunks_get(chunks, i)
            kind = int(mt.mtmd_input_chunk_get_type(chunk))
            if kind == mt.MTMD_INPUT_CHUNK_TYPE_TEXT:
                n = ctypes.c_size_t()
                ptr = mt.mtmd_input_chunk_get_tokens_text(chunk, ctypes.byref(n))
                ids = [int(ptr[j]) for j in range(n.value)]
                if ids:
                    self.parts.append(("text", ids))
            elif kind == mt.MTMD_INPUT_CHUNK_TYPE_IMAGE:
                self.parts.append(("image", chunk))
            else:
                self.close()
                raise RuntimeError("mtmd returned a non-image media chunk for an image")
            self.n_tokens += int(mt.mtmd_input_chunk_get_n_tokens(chunk))
            self.n_pos += int(mt.mtmd_input_chunk_get_n_pos(chunk))

    @property
    def image_tokens(self) -> int:
        """Embeddings of the image itself (without the wrapper text)."""
        return sum(int(self._mt.mtmd_input_chunk_get_n_tokens(c)) for kind, c in self.parts if kind == "image")

    def prefill_steps(self, lm: RegionLM, chunk: int) -> list[Step]:
        """The prefill steps of this image, in order; :meth:`RegionLM.prefill` polls the busy flag before each."""
        if self._chunks is None:
            raise RuntimeError("this image segment was closed")
        steps: list[Step] = []
        for kind, part in self.parts:
            if kind == "text":
                steps += [lambda last, t=part[i : i + chunk]: lm._decode(t, None, last) for i in range(0, len(part), chunk)]
            else:
                steps += self._image_steps(lm, part, chunk)
        return steps

    def _image_steps(self, lm: RegionLM, chunk_ptr: Any, chunk: int) -> list[Step]:
        mt = self._mt
        ctx = self._images.ctx
        n = int(mt.mtmd_input_chunk_get_n_tokens(chunk_ptr))
        n_pos = int(mt.mtmd_input_chunk_get_n_pos(chunk_ptr))
        non_causal = bool(mt.mtmd_decode_use_non_causal(ctx, chunk_ptr))
        piece = n if non_causal else max(1, chunk)
        state: dict[str, Any] = {}

        def encode(last: bool) -> None:
            # the vision tower; its output is copied because mtmd reuses the buffer for the next image
            rc = mt.mtmd_encode_chunk(ctx, chunk_ptr)
            if rc != 0:
                raise RuntimeError(f"mtmd could not encode the image (return code {rc})")
            width = lm.n_embd_inp
            ptr = mt.mtmd_get_output_embd(ctx)
            state["embd"] = np.ctypeslib.as_array(ptr, shape=(n * width,)).reshape(n, width).copy()
            state["pos"] = self._positions(lm.n_past, chunk_ptr, n)
            state["base"] = lm.n_past

        def decode(last: bool, start: int) -> None:
            if last:
                raise ValueError("a prompt cannot end with an image: the answer follows text (the prompt's suffix)")
            m = min(piece, n - start)
            pos = state["pos"][:, start : start + m].reshape(-1)  # section-major for this piece
            if non_causal:
                lm._lc.llama_set_causal_attn(lm.ctx, False)
            try:
                lm._decode(None, state["embd"][start : start + m], False, positions=pos, advance=0)
            finally:
                if non_causal:
                    lm._lc.llama_set_causal_attn(lm.ctx, True)
            if start + m == n:  # the image is in: the sequence moves on by mtmd's n_pos, not by n
                lm.n_past = state["base"] + n_pos

        steps: list[Step] = [encode]
        steps += [lambda last, s=s: decode(last, s) for s in range(0, n, piece)]
        return steps

    def _positions(self, n_past: int, chunk_ptr: Any, n: int) -> np.ndarray:
        """``[n_pos_per_embd, n]`` positions of the image's embeddings, as mtmd's helper sets them."""
        mt = self._mt
        if not self._images.mrope:
            return np.arange(n_past, n_past + n, dtype=np.int32)[None, :]
        image = mt.mtmd_input_chunk_get_tokens_image(chunk_ptr)
        rel = (mt.mtmd_decoder_pos * n)()
        mt.mtmd_helper_image_get_decoder_pos(image, n_past, rel)
        # section order of mtmd-helper's set_position_mrope_2d: t, y, x, z
        return np.array([[p.t for p in rel], [p.y for p in rel], [p.x for p in rel], [p.z for p in rel]], np.int32)

    def close(self) -> None:
        if getattr(self, "_chunks", None) is not None:
            self._mt.mtmd_input_chunks_free(self._chunks)
            self._chunks = None
            self.parts = []

    def __del__(self) -> None:  # pragma: no cover - best effort
        try:
            self.close()
        except Exception:
            pass
