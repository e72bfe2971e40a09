"""The byte-level fallback tokenizer, for random-weight models when no real tokenizer is installed.

Deterministic and dependency-free, so workloads can still build prompts of an exact token length:
- ids 0, 1, 2 are `<|endoftext|>`, `<|im_start|>`, `<|im_end|>` (SmolLM2's layout, so ChatML
  prompts render the same way; id 2 is the EOS);
- every other id is 3 + one UTF-8 byte (3..258).
Text is not what a trained model would see, but a random-weight model has no trained vocabulary:
for speed and energy runs only the number of ids matters.
"""

from __future__ import annotations

import re

SPECIALS = {"<|endoftext|>": 0, "<|im_start|>": 1, "<|im_end|>": 2}
BYTE_OFFSET = 3
VOCAB_SIZE = BYTE_OFFSET + 256
EOS_ID = 2
_SPLIT = re.compile("(" + "|".join(re.escape(s) for s in SPECIALS) + ")")


class ByteTokenizer:
    eos_token_id = EOS_ID
    pad_token_id = EOS_ID
    vocab_size = VOCAB_SIZE

    def encode(self, text: str) -> list[int]:
        ids: list[int] = []
        for part in _SPLIT.split(text):
            if part in SPECIALS:
                ids.append(SPECIALS[part])
            elif part:
                ids.extend(BYTE_OFFSET + b for b in part.encode("utf-8"))
        return ids

    def decode(self, ids: list[int]) -> str:
        """Skips special ids (and any id outside the byte range, which a random model may emit)."""
        data = bytes(i - BYTE_OFFSET for i in ids if BYTE_OFFSET <= i < VOCAB_SIZE)
        return data.decode("utf-8", errors="replace")
