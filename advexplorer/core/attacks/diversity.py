"""Input diversity for transfer attacks (DI-FGSM): the gradient is taken through a random
resize-and-pad of the image.

Xie, Zhang, Zhou, Bai, Wang, Ren, Yuille, *Improving Transferability of Adversarial Examples
with Input Diversity*, CVPR 2019, https://arxiv.org/abs/1803.06978. Before each gradient
evaluation, with probability ``p``, the image is shrunk to a random size between 90 % and
100 % of its side and padded with zeros, at a random offset, back to its own size; the
gradient flows back through that transform to the image. A perturbation that fools the
model through many such views overfits the surrogate less, so it transfers better.

The transform changes only what the model is asked for the *gradient*: the step itself, the
mask, the ε-ball and the [0,1] clipping are the driver's, as for every method, and the
scores a user sees are the model's on the untransformed image. As in torchattacks'
``DIFGSM`` (and the authors' code) one transform is drawn per step for the whole batch.
Draws come from their own seeded stream, so a run's random start is the same with or
without diversity, and the recorded seed repeats the run exactly.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

#: The smallest size of the shrunk image, as a fraction of its side (torchattacks' resize_rate).
RESIZE_RATE = 0.9
#: Offset of the diversity stream's seed from the run's seed (a separate stream; see above).
SEED_OFFSET = 0x5D1


def resize_and_pad(images: torch.Tensor, height: int, width: int, top: int, left: int) -> torch.Tensor:
    """Bilinearly resize N×C×H×W ``images`` to ``height``×``width`` and pad with zeros, ``top``
    rows above and ``left`` columns to the left, back to H×W (differentiable)."""
    full_height, full_width = images.shape[-2:]
    rescaled = F.interpolate(images, size=[height, width], mode="bilinear", align_corners=False)
    return F.pad(rescaled, [left, full_width - width - left, top, full_height - height - top], value=0.0)


class InputDiversity:
    """Draws, per gradient evaluation, whether and how the image is resized and padded."""

    def __init__(self, probability: float, seed: int, resize_rate: float = RESIZE_RATE):
        self.probability = float(probability)
        self.resize_rate = float(resize_rate)
        self.generator = torch.Generator().manual_seed(int(seed) + SEED_OFFSET)
        #: How many evaluations were transformed, of how many (the tests read these).
        self.applied = self.drawn = 0
        #: Image-passes spent scoring the untransformed images of transformed evaluations.
        self.extra_passes = 0

    def _randint(self, low: int, high: int) -> int:
        """A draw from [low, high) (just ``low`` when the range is empty)."""
        if high <= low:
            return low
        return int(torch.randint(low, high, (1,), generator=self.generator))

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        """``images`` itself (probability 1−p) or its random resize-and-pad (probability p)."""
        self.drawn += 1
        if not float(torch.rand(1, generator=self.generator)) < self.probability:
            return images
        self.applied += 1
        self.extra_passes += images.shape[0]
        height, width = images.shape[-2:]
        # As torchattacks: the new width is drawn from [⌊rate·W⌋, W); the height keeps the aspect.
        new_width = self._randint(max(1, int(width * self.resize_rate)), width)
        new_height = max(1, min(height, round(height * new_width / width)))
        top = self._randint(0, height - new_height)
        left = self._randint(0, width - new_width)
        return resize_and_pad(images, new_height, new_width, top, left)
