"""Style slots in the renderer: the weighted multi-way blend, and that two slots at weights
(1 - a, a) are exactly today's A/B riffuse at alpha a (tiny model, CPU)."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest
import torch

from riffbridge.errors import ConfigError
from riffbridge.render.riffuse import (
    Renderer,
    RiffuseJob,
    blend_embeddings,
    blend_noises,
    fold_shares,
    normalise_weights,
    seed_noise,
    slerp,
)

W = 64


@pytest.fixture(scope="module")
def renderer() -> Renderer:
    return Renderer("tiny", device="cpu")


def alphas() -> list[float]:
    rng = random.Random(7)
    return [0.0, 1.0, 0.5, 0.125, 0.3, 1 / 3, 0.999999, 1e-9,
            *(rng.random() for _ in range(200))]


def test_two_weights_one_minus_a_and_a_are_exactly_alpha() -> None:
    for a in alphas():
        assert normalise_weights([1 - a, a]) == (1 - a, a)
        shares = fold_shares(normalise_weights([1 - a, a]))
        assert shares == ([(0, 1.0), (1, a)] if 0 < a < 1 else [(0 if a == 0 else 1, 1.0)])


def test_two_slot_blend_is_bitwise_todays_lerp_and_slerp() -> None:
    ea, eb = torch.randn(77, 32, generator=torch.Generator().manual_seed(1)), \
        torch.randn(77, 32, generator=torch.Generator().manual_seed(2))
    na, nb = seed_noise(42, W), seed_noise(43, W)
    for a in alphas():
        assert torch.equal(blend_embeddings([ea, eb], [1 - a, a]), torch.lerp(ea, eb, a)), a
        assert torch.equal(blend_noises([na, nb], [1 - a, a]), slerp(a, na, nb)), a


def test_weights_are_normalised() -> None:
    e = [torch.full((4,), float(v)) for v in (1.0, 2.0, 4.0)]
    # (2, 2, 4) and (0.25, 0.25, 0.5) are the same mix: 0.25*1 + 0.25*2 + 0.5*4 = 2.75
    for weights in ([2, 2, 4], [0.25, 0.25, 0.5], [20, 20, 40]):
        assert torch.allclose(blend_embeddings(e, weights), torch.full((4,), 2.75))
    assert normalise_weights([3.0, 1.0]) == (0.75, 0.25)
    assert math.isclose(sum(normalise_weights([0.1, 0.7, 0.3, 5.0])), 1.0)
    # a slot at weight 0 takes no part: the mix is the others' alone, bit for bit
    n = [seed_noise(s, W) for s in (1, 2, 3)]
    assert torch.equal(blend_noises(n, [0.0, 1.0, 3.0]), blend_noises(n[1:], [1.0, 3.0]))
    assert torch.equal(blend_noises(n, [0.0, 5.0, 0.0]), n[1])


def test_multi_way_noise_keeps_the_gaussian_norm() -> None:
    n = [seed_noise(s, W) for s in range(8)]
    blended = blend_noises(n, [1.0] * 8)
    assert abs(float(blended.norm()) / float(n[0].norm()) - 1.0) < 0.05
    # every slot has a part: the blend correlates with each slot's noise
    for x in n:
        corr = float((blended.flatten() @ x.flatten()) / (blended.norm() * x.norm()))
        assert corr > 0.2


@pytest.mark.parametrize("styles, word", [
    ((("a", 1, 0.0), ("b", 2, 0.0)), "all be zero"),
    ((("a", 1, -0.5), ("b", 2, 1.0)), "weight must be a finite number >= 0, got -0.5"),
    ((("a", 1, math.nan), ("b", 2, 1.0)), "got nan"),
    (tuple(("a", i, 1.0) for i in range(9)), "1 to 8"),
    ((("a", -1, 1.0),), "seed"),
])
def test_bad_styles_name_the_value(styles: tuple[tuple[str, int, float], ...], word: str
                                   ) -> None:
    with pytest.raises(ConfigError, match=word):
        RiffuseJob(prompt_a="x", styles=styles, steps=2, width=W)


def render(renderer: Renderer, job: RiffuseJob) -> np.ndarray:
    return np.asarray(renderer.render([job])[0])


def test_two_slot_render_equals_the_ab_render_byte_for_byte(renderer: Renderer) -> None:
    for a in (0.0, 0.375, 0.61, 1.0):
        ab = RiffuseJob(prompt_a="funk drums", prompt_b="jazz piano", seed_a=42, seed_b=43,
                        alpha=a, steps=2, width=W)
        slots = RiffuseJob(prompt_a="funk drums", steps=2, width=W,
                           styles=(("funk drums", 42, 1 - a), ("jazz piano", 43, a)))
        assert render(renderer, ab).tobytes() == render(renderer, slots).tobytes(), a
        # the starting latents, too (the render above decodes them)
        assert torch.equal(renderer._noise(ab, W), renderer._noise(slots, W))
        assert torch.equal(renderer._condition(ab), renderer._condition(slots))


def test_same_slots_weights_seeds_same_bytes(renderer: Renderer) -> None:
    styles = (("funk", 1, 0.2), ("jazz", 2, 0.5), ("dub", 3, 0.1), ("acid", 4, 0.2))
    first = render(renderer, RiffuseJob(prompt_a="funk", steps=2, width=W, styles=styles))
    renderer.forget_prompts()
    again = render(renderer, RiffuseJob(prompt_a="funk", steps=2, width=W, styles=styles))
    assert first.tobytes() == again.tobytes()
    other = render(renderer, RiffuseJob(prompt_a="funk", steps=2, width=W,
                                        styles=(*styles[:3], ("acid", 5, 0.2))))
    assert other.tobytes() != first.tobytes()
