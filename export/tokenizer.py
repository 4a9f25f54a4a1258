"""A small byte-level BPE tokenizer built offline for the tiny Qwen test model.

Why: tests and the demo need a real GGUF that llama.cpp tokenizes the same way
Hugging Face does, without downloading Qwen's 151k-token vocabulary. We train a
few hundred merges on a fixed text with the `tokenizers` library, using Qwen2's
own pre-tokenizer regex, so that llama.cpp's ``qwen2`` pre-tokenizer (which the
converter is told to record for this tokenizer) splits text identically.
Everything is deterministic: the same text and settings give the same files.
"""

from __future__ import annotations

from pathlib import Path

# Qwen2's pre-tokenizer split pattern (tokenizer.json of Qwen/Qwen2-*).
QWEN2_SPLIT_PATTERN = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)

SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
# Qwen2-VL's vision markers, appended after the chat tokens for the tiny vision-language model.
VISION_TOKENS = ["<|vision_start|>", "<|vision_end|>", "<|image_pad|>", "<|video_pad|>"]

# ChatML, the template family of Qwen chat models; llama.cpp reads it from the GGUF. Content may be a
# string or a list of parts (OpenAI style): text parts are joined, image parts become Qwen2-VL's vision
# markers (llama.cpp's multimodal handler turns images into its own marker text part first).
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' }}"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for part in message['content'] %}"
    "{% if part['type'] == 'text' %}{{ part['text'] }}"
    "{% elif part['type'] in ('image', 'image_url') %}{{ '<|vision_start|><|image_pad|><|vision_end|>' }}{% endif %}"
    "{% endfor %}{% endif %}"
    "{{ '<|im_end|>\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

TRAINING_TEXT = """\
The inspection station looks at every part on the line. A camera takes a frame when the trigger fires,
the region expert compares the patches with the memory bank of good parts, and the verdict goes to the PLC.
A scratch is a long thin mark on the surface. A spot is a small round stain. A crack runs through the part
and may branch. A missing area shows the background where metal should be. Dents, burrs and chips are
common defects on machined parts; stains and contamination are common on painted and plastic parts.
The region is in the top-left, top, top-right, left, center, right, bottom-left, bottom or bottom-right.
Severity is low, medium or high. The defect covers 12 square millimetres and the score is 0.83.
{"defect_type": "scratch", "location": "center", "severity": "high", "description": "a thin scratch"}
Explain the anomaly in one sentence. The part is OK. The part is NG. Reject the part at the gate.
Quality engineers read the explanation, technicians adjust the thresholds, operators watch the overlay.
0 1 2 3 4 5 6 7 8 9 10 100 1000 - + = ( ) [ ] { } , . : ; ! ? ' " / \\ _ * # @ % & < >
"""


def answer_text() -> str:
    """The region answers' vocabulary as training text: JSON keys, 3×3 locations, defect types, severities.

    With it, the tokenizer learns whole-word merges for them: an answer is ~20
    tokens instead of ~35, which halves the training cost of the tiny Qwen3.5
    and makes each answer slot (e.g. the location) hinge on one or two tokens.
    """
    from edge.assistant.projector import LOCATIONS, SEVERITIES
    from edge.assistant.projector import answer_text as one

    types = ("scratch", "spot", "crack", "missing", "dent", "stain", "contamination")
    lines = [one(loc, t, sev) for loc in LOCATIONS for t in types for sev in SEVERITIES]
    return "\n".join(lines) + "\nRegion: \nuser\nassistant\n" * 20


def build_tiny_tokenizer(out_dir: Path, vocab_size: int = 384, vision: bool = False, answers: bool = False) -> dict[str, int]:
    """Train the tiny tokenizer and save it as a Hugging Face fast tokenizer in ``out_dir``.

    Returns the ids of the special tokens plus ``"n_vocab"``, the vocabulary
    size including them (the model's embedding table needs at least this many
    rows). ``vision`` adds Qwen2-VL's vision marker tokens; ``answers`` also
    trains on the region answers' vocabulary (:func:`answer_text`).
    """
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token=None, byte_fallback=False))
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(QWEN2_SPLIT_PATTERN), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    text = TRAINING_TEXT + (answer_text() if answers else "")
    tok.train_from_iterator(text.splitlines(), trainer=trainer)
    # Special tokens go after the learned vocabulary, as in Qwen's tokenizer.
    specials = SPECIAL_TOKENS + (VISION_TOKENS if vision else [])
    tok.add_special_tokens(specials)

    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        bos_token=None,
        unk_token=None,
        model_max_length=512,
    )
    fast.chat_template = CHAT_TEMPLATE
    out_dir.mkdir(parents=True, exist_ok=True)
    fast.save_pretrained(str(out_dir))
    ids = {name: int(fast.convert_tokens_to_ids(name)) for name in specials}
    ids["n_vocab"] = len(fast)
    return ids
