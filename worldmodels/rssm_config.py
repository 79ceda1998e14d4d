"""`RSSMConfig`: the RSSM's sizes and loss weights, validated, with DreamerV3's size presets.

The presets copy the `size*` blocks of DreamerV3's `configs.yaml` (danijar/dreamerv3): each sets
`rssm.{deter, hidden, classes}`, the MLP width `units` and the CNN width `depth`; everything else
keeps DreamerV3's defaults (32 stochastic groups, 8 GRU blocks, RMSNorm, SiLU, encoder and decoder
3 layers, reward and continue heads 1 layer, prior 2 layers, posterior 1 layer, 1 block-diagonal
hidden layer; for image observations CNN channel multipliers `(2, 3, 4, 4)`, kernel 5, and
stride-2 stages down to 4x4, so 64x64 images take DreamerV3's 4 stages).

Example:
  >>> cfg = RSSMConfig.size12m(objective="inverse_dynamics", absolute=True)
  >>> cfg.deter, cfg.hidden, cfg.groups, cfg.classes, cfg.units, cfg.depth
  (2048, 256, 32, 16, 256, 16)
"""

from __future__ import annotations

import dataclasses
from typing import Literal

from worldmodels.checks import Range, check_config, check_order

# name: (deter, hidden, classes, units, depth), from DreamerV3's configs.yaml.
_PRESETS = {
    "size1m": (512, 64, 4, 64, 4),
    "size12m": (2048, 256, 16, 256, 16),
    "size25m": (3072, 384, 24, 384, 24),
    "size50m": (4096, 512, 32, 512, 32),
    "size100m": (6144, 768, 48, 768, 48),
    "size200m": (8192, 1024, 64, 1024, 64),
    "size400m": (12288, 1536, 96, 1536, 96),
}


@dataclasses.dataclass(frozen=True, kw_only=True)
class RSSMConfig:
    """RSSM model and loss hyper-parameters; defaults are DreamerV3's `size1m` (its proprio preset).

    Attributes:
      deter: GRU state size (divisible by `blocks`).
      hidden: width of the GRU's input embeddings and of the prior/posterior layers.
      groups: number of categorical latents (DreamerV3's `stoch`).
      classes: classes per categorical.
      blocks: diagonal blocks of the GRU.
      units: width of the encoder, decoder and head MLPs; also the embedding size of vector
        observations.
      depth: base channels of the image encoder and decoder (DreamerV3's CNN `depth`).
      mults: channel multipliers of the CNN stages (the last repeats if the image needs more).
      kernel: CNN kernel size.
      minres: resolution that the image encoder's stride-2 stages halve images down to; images
        must be square with size `minres * 2**k`, `k >= 1`. Image embeddings have
        `minres**2 * depth * mults[k - 1]` features (256 for `size1m` at 64x64).
      enc_layers: depth of the encoder MLP (vector observations).
      dec_layers: depth of the decoder MLP.
      reward_layers: depth of the reward head.
      cont_layers: depth of the continue head.
      inv_layers: depth of the inverse-dynamics head.
      img_layers: depth of the prior MLP.
      obs_layers: depth of the posterior MLP.
      dyn_layers: block-diagonal hidden layers inside the GRU.
      norm: `"rms"` or `"layer"` normalisation.
      act: hidden activation.
      unimix: uniform mix of the latent categoricals, in [0, 1).
      free_nats: each KL term is clipped below at this many nats (no gradient under it).
      dyn_scale: KL balancing weight of the dynamics loss `KL(sg(post)||prior)`.
      rep_scale: KL balancing weight of the representation loss `KL(post||sg(prior))`.
      rec_scale: weight of the decoder (or inverse-dynamics) loss.
      reward_scale: weight of the reward loss (weights and `free_nats` are >= 0).
      cont_scale: weight of the continue loss.
      num_bins: two-hot bins of the reward, in symlog space.
      vmin: the lowest bin (symlog space).
      vmax: the highest bin (symlog space).
      objective: `"decoder"` (reconstruct observations) or `"inverse_dynamics"` (predict `a_t`
        from `(z_t, z_{t+1})`), the one switch between the two variants.
      absolute: the posterior sees only the observation embedding, not `deter` (DreamerV3's
        `absolute`). Required by `"inverse_dynamics"`: `deter_{t+1}` is computed from `a_t`, so a
        posterior that sees it could hand `a_t` to the inverse head without looking at `o_{t+1}`.

    Every float must be finite (`worldmodels.checks`); a bad value raises ValueError naming it.
    """

    deter: int = 512
    hidden: int = 64
    groups: int = 32
    classes: int = 4
    blocks: int = 8
    units: int = 64
    depth: int = 4
    mults: tuple[int, ...] = (2, 3, 4, 4)
    kernel: int = 5
    minres: int = 4
    enc_layers: int = 3
    dec_layers: int = 3
    reward_layers: int = 1
    cont_layers: int = 1
    inv_layers: int = 3
    img_layers: int = 2
    obs_layers: int = 1
    dyn_layers: int = 1
    norm: Literal["rms", "layer"] = "rms"
    act: Literal["silu", "mish", "relu", "elu", "tanh"] = "silu"
    unimix: float = 0.01
    free_nats: float = 1.0
    dyn_scale: float = 0.5
    rep_scale: float = 0.1
    rec_scale: float = 1.0
    reward_scale: float = 1.0
    cont_scale: float = 1.0
    num_bins: int = 255
    vmin: float = -20.0
    vmax: float = 20.0
    objective: Literal["decoder", "inverse_dynamics"] = "decoder"
    absolute: bool = False

    def __post_init__(self):
        sizes = dict(deter=1, hidden=1, groups=1, classes=2, blocks=1, units=1, depth=1, kernel=1)
        sizes |= dict(minres=1, enc_layers=1, num_bins=2)
        optional = ("dec", "reward", "cont", "inv", "img", "obs", "dyn")  # these may have 0 layers
        sizes |= {f"{name}_layers": 0 for name in optional}
        weights = ("free_nats", "dyn_scale", "rep_scale", "rec_scale", "reward_scale", "cont_scale")
        check_config(
            self,
            {name: Range(ge=low, integer=True) for name, low in sizes.items()}
            | {"unimix": Range(ge=0, lt=1)}
            | {name: Range(ge=0) for name in weights},
        )
        mults = self.mults
        if not isinstance(mults, tuple) or not mults:
            raise ValueError(f"RSSMConfig.mults must be a non-empty tuple, got {mults!r}")
        if any(not isinstance(m, int) or isinstance(m, bool) or m < 1 for m in mults):
            raise ValueError(f"RSSMConfig.mults must hold ints >= 1, got {mults!r}")
        if self.deter % self.blocks:
            raise ValueError(
                f"RSSMConfig.deter ({self.deter}) must be divisible by blocks ({self.blocks})"
            )
        if self.norm not in ("rms", "layer"):
            raise ValueError(f"RSSMConfig.norm must be 'rms' or 'layer', got {self.norm!r}")
        if self.act not in ("silu", "mish", "relu", "elu", "tanh"):
            raise ValueError(f"RSSMConfig.act must be a known activation, got {self.act!r}")
        check_order(self, "vmin", "vmax")
        if self.objective not in ("decoder", "inverse_dynamics"):
            raise ValueError(
                f"RSSMConfig.objective must be 'decoder' or 'inverse_dynamics', "
                f"got {self.objective!r}"
            )
        if self.objective == "inverse_dynamics" and not self.absolute:
            raise ValueError(
                "RSSMConfig.absolute must be True with objective='inverse_dynamics' (a posterior "
                "that sees deter_{t+1}, computed from a_t, would leak a_t to the inverse head)"
            )

    @classmethod
    def preset(cls, name: str, **overrides) -> RSSMConfig:
        """DreamerV3's `name` preset (`size1m` ... `size400m`), with field overrides."""
        if name not in _PRESETS:
            raise ValueError(
                f"RSSMConfig.preset: name must be one of {list(_PRESETS)}, got {name!r}"
            )
        deter, hidden, classes, units, depth = _PRESETS[name]
        sizes = dict(deter=deter, hidden=hidden, classes=classes, units=units, depth=depth)
        return cls(**(sizes | overrides))

    @classmethod
    def size1m(cls, **overrides) -> RSSMConfig:
        """DreamerV3 `size1m`: deter 512, hidden 64, classes 4, units 64, depth 4."""
        return cls.preset("size1m", **overrides)

    @classmethod
    def size12m(cls, **overrides) -> RSSMConfig:
        """DreamerV3 `size12m`: deter 2048, hidden 256, classes 16, units 256, depth 16."""
        return cls.preset("size12m", **overrides)

    @classmethod
    def size25m(cls, **overrides) -> RSSMConfig:
        """DreamerV3 `size25m`: deter 3072, hidden 384, classes 24, units 384, depth 24."""
        return cls.preset("size25m", **overrides)

    @classmethod
    def size50m(cls, **overrides) -> RSSMConfig:
        """DreamerV3 `size50m`: deter 4096, hidden 512, classes 32, units 512, depth 32."""
        return cls.preset("size50m", **overrides)

    @classmethod
    def size100m(cls, **overrides) -> RSSMConfig:
        """DreamerV3 `size100m`: deter 6144, hidden 768, classes 48, units 768, depth 48."""
        return cls.preset("size100m", **overrides)

    @classmethod
    def size200m(cls, **overrides) -> RSSMConfig:
        """DreamerV3 `size200m`: deter 8192, hidden 1024, classes 64, units 1024, depth 64."""
        return cls.preset("size200m", **overrides)

    @classmethod
    def size400m(cls, **overrides) -> RSSMConfig:
        """DreamerV3 `size400m`: deter 12288, hidden 1536, classes 96, units 1536, depth 96."""
        return cls.preset("size400m", **overrides)
