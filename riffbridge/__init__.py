"""riffbridge: play the Riffusion model like an instrument."""

import os as _os

# Intel MKL (torch's CPU BLAS and FFT on x86) picks code paths by the memory alignment of its
# inputs and by how many threads it gets, so the same spectrogram gave other float sums in a
# fresh process than in one that had converted other files first: `riffbridge convert a b c`
# and `riffbridge convert c` differed by one 16-bit step in most samples. Strict conditional
# numerical reproducibility makes CPU results the same in every process (set before torch
# first calls MKL; a user's own MKL_CBWR wins).
_os.environ.setdefault("MKL_CBWR", "AUTO,STRICT")

__version__ = "0.1.0"
