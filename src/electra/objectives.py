"""The paper's alternatives to joint ELECTRA training: the BERT masked-LM baseline, generator-training modes
(§3.2, Appendix F) and the efficiency ablations of §3.2 / Table 5. Each is a module with the same call as
:class:`electra.pretraining.ReplacedTokenDetection` — ``(input_ids, attention_mask, token_type_ids, rng) ->
(loss, metrics)`` — so the pre-training loop runs them unchanged; each takes ``word_start`` too, used by whole-word
masking (``--whole-word-masking``: its ``masking`` is :class:`~electra.pretraining.WholeWordMasking`).

Generator training (``--generator-training``, with ``--objective electra``):

- ``joint``: the paper's default, :class:`~electra.pretraining.ReplacedTokenDetection`.
- ``two-stage``: the generator alone learns MLM for n steps; the discriminator is then initialised from the
  generator's weights (equal sizes: ``--generator-size 1.0``; embeddings untied so the generator can stay
  frozen) and learns replaced-token detection with the generator frozen. Each stage has its own warm-up and
  linear decay of the learning rate.
- ``adversarial``: the generator is trained to *maximise* the discriminator's loss on its samples with
  REINFORCE (Appendix F): for each masked position t the reward is the discriminator's loss there,
  ``R_t = -log D(x̂_t)`` if the sample equals the original else ``-log(1 - D(x̂_t))``, and the generator
  minimises ``-(R_t - b_t) log p_G(x̂_t)``. The baseline is learned, ``b_t = -log sigmoid(w·h_G(t))`` trained
  with cross-entropy against ``exp(-R_t)`` (the paper's), or a running mean of the reward. An optional
  entropy bonus and MLM warm-start steps. The generator's MLM accuracy and entropy are logged: the paper
  reports that adversarial generators end less accurate (58% vs 65%) and with low-entropy outputs.

Objectives (``--objective``; ``electra`` is :class:`~electra.pretraining.ReplacedTokenDetection`):

- ``mlm``: the baseline every comparison is made against (Table 5's "BERT"): BERT's masked language modelling
  (Devlin et al. 2019) on the same data, 15% of the tokens chosen, of them 80% ``[MASK]``, 10% a random token,
  10% unchanged; the network trained is the generator, built at the discriminator's size
  (:func:`adjust_model_config`), and nothing else.
- ``electra-15``: replaced-token detection, but the discriminator's loss only on the masked ~15% of tokens.
- ``replace-mlm``: masked tokens are replaced by generator samples instead of ``[MASK]``; a discriminator-sized
  network (the discriminator's encoder + an MLM head tied to the shared embeddings) predicts the originals
  at the masked positions.
- ``all-tokens-mlm``: like ``replace-mlm``, but the network predicts the identity of every token, with the
  paper's copy mechanism: a sigmoid copy probability D per token (the discriminator head; D = sigmoid(-logit)
  so its sign still means "replaced") and ``p(x_t) = D·[x_t = input token] + (1 - D)·softmax(MLM logits)``.

In every mode the network to fine-tune is the discriminator's encoder, except ``mlm`` (the generator network
at the discriminator's size); see :func:`electra.checkpoint.load_encoder_for_finetuning`. Parameters these
objectives add (the MLM head, the learned baseline) and their state are saved beside the model in each
checkpoint as ``objective.safetensors`` (see :func:`save_objective_state`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

from electra.config import GENERATOR_TRAINING, OBJECTIVES, ModelConfig, PretrainConfig  # noqa: F401 (re-exported)
from electra.errors import ElectraError
from electra.modeling import Electra, GeneratorHead, init_weights
from electra.pretraining import (
    Masked,
    ReplacedTokenDetection,
    SpecialIds,
    TokenMasking,
    WholeWordMasking,
    masked_lm_loss,
    max_predictions_per_seq,
    sample_from_softmax,
    scatter_replace,
)
from electra.training.schedule import lr_multiplier

STATE_FILE = "objective.safetensors"


# ---- configuration ------------------------------------------------------------------------------------
def check_options(cfg: PretrainConfig) -> None:
    """One-line errors for unknown or incompatible objective / generator-training choices (the rules live in
    :class:`electra.config.PretrainConfig`; checked again here because a config may be changed after it is made)."""
    cfg.validate()


def generator_steps(cfg: PretrainConfig) -> int:
    """Two-stage: how many steps train the generator alone (default: half of the run)."""
    return cfg.two_stage_generator_steps or cfg.max_steps // 2


def adjust_model_config(cfg: PretrainConfig, model_cfg: ModelConfig) -> ModelConfig:
    """The model shape a mode needs: the MLM baseline trains a generator of the discriminator's size, two-stage
    wants a generator identical to the discriminator. GDES sharing needs a generator that learns MLM beside a
    discriminator: the mlm objective (no discriminator) and two-stage (a frozen generator) refuse it."""
    if model_cfg.embedding_sharing == "gdes" and (cfg.objective == "mlm" or cfg.generator_training == "two-stage"):
        mode = "--objective mlm trains no discriminator" if cfg.objective == "mlm" else \
            "--generator-training two-stage freezes the generator, whose table GDES would keep following"
        raise ElectraError(f"--embedding-sharing gdes: {mode}; use es or nes")
    if cfg.objective == "mlm":
        return model_cfg.replace(generator_size=1.0, generator_depth=1.0)
    if cfg.generator_training != "two-stage":
        return model_cfg
    if model_cfg.generator_size != 1.0 or model_cfg.generator_depth != 1.0:
        raise ElectraError(f"--generator-training two-stage initialises the discriminator from the generator, so "
                           f"both must have the same size: pass --generator-size 1.0 (got "
                           f"{model_cfg.generator_size}, depth {model_cfg.generator_depth})")
    d = model_cfg.discriminator
    # Untied embeddings: the frozen generator keeps its own; same heads and FFN: the weights copy over exactly.
    return model_cfg.replace(embedding_sharing="nes", generator_num_heads=d.num_heads,
                             generator_intermediate_size=d.intermediate_size)


def build_objective(model: Electra, special: SpecialIds, max_seq_len: int, cfg: PretrainConfig,
                    word_starts: Any = None) -> nn.Module:
    """The objective module for ``cfg.objective`` x ``cfg.generator_training``; with ``cfg.whole_word_masking`` its
    masking is whole-word (:class:`~electra.pretraining.WholeWordMasking`), with the batches' ``word_start`` or
    else ``word_starts``, the vocabulary's table (:func:`electra.tokenization.word_start_table`)."""
    objective = _build_objective(model, special, max_seq_len, cfg)
    if cfg.whole_word_masking:
        objective.masking = WholeWordMasking(word_starts)
    return objective


def _build_objective(model: Electra, special: SpecialIds, max_seq_len: int, cfg: PretrainConfig) -> nn.Module:
    check_options(cfg)
    if cfg.objective == "mlm":
        return MaskedLM(model, special, max_seq_len, mask_prob=cfg.mask_prob)
    common = dict(mask_prob=cfg.mask_prob, generator_weight=cfg.generator_weight,
                  discriminator_weight=cfg.discriminator_weight, temperature=cfg.temperature)
    if cfg.generator_training == "two-stage":
        return TwoStage(model, special, max_seq_len, generator_steps=generator_steps(cfg), **common)
    if cfg.generator_training == "adversarial":
        return Adversarial(model, special, max_seq_len, mlm_steps=cfg.adversarial_mlm_steps,
                           baseline=cfg.adversarial_baseline, entropy_weight=cfg.adversarial_entropy, **common)
    if cfg.objective == "electra-15":
        return MaskedOnlyDetection(model, special, max_seq_len, **common)
    if cfg.objective in ("replace-mlm", "all-tokens-mlm"):
        return ReplaceMLM(model, special, max_seq_len, all_tokens=cfg.objective == "all-tokens-mlm", **common)
    return ReplacedTokenDetection(model, special, max_seq_len, **common)


def trained_parameters_root(objective: nn.Module) -> nn.Module:
    """The module whose parameters the optimiser updates (for ``electra`` and ``mlm``, the networks they train)."""
    if isinstance(objective, MaskedLM):
        return objective.model.generator
    if isinstance(objective, ReplacedTokenDetection):
        return objective.model
    return objective


def begin_step(objective: nn.Module, step: int, max_steps: int, warmup_steps: int) -> float:
    """Tell the objective which step runs next (phase switches happen here); returns the LR multiplier."""
    if isinstance(objective, Variant):
        return objective.begin_step(step, max_steps, warmup_steps)
    return lr_multiplier(step, max_steps, warmup_steps)


def needs_unused_parameters(objective: nn.Module) -> bool:
    """Whether some parameters get no gradient in a step (DDP must then look for unused parameters)."""
    return not isinstance(objective, ReplacedTokenDetection)


def save_objective_state(objective: nn.Module, directory: Path) -> None:
    """Write the objective's own parameters and buffers (not the model's) to ``directory/objective.safetensors``."""
    state = objective_state(objective)
    if state:
        save_file({k: v.detach().contiguous().cpu() for k, v in state.items()}, str(directory / STATE_FILE))


def load_objective_state(objective: nn.Module, directory: Path) -> None:
    """Restore what :func:`save_objective_state` wrote (strict: a missing file or tensor is an error)."""
    expected = objective_state(objective)
    if not expected:
        return
    file = Path(directory) / STATE_FILE
    if not file.is_file():
        raise ElectraError(f"{directory}: no {STATE_FILE} (the objective's heads); was it saved by another "
                           "objective?")
    tensors = load_file(str(file))
    if set(tensors) != set(expected):
        raise ElectraError(f"{file}: holds {sorted(tensors)}, expected {sorted(expected)}")
    device = next(iter(expected.values())).device
    objective.load_state_dict({k: v.to(device) for k, v in tensors.items()}, strict=False)


def objective_state(objective: nn.Module) -> dict[str, Tensor]:
    return {k: v for k, v in objective.state_dict().items() if not k.startswith("model.")}


# ---- the objectives -----------------------------------------------------------------------------------
def detection_loss(logits: Tensor, labels: Tensor, weights: Tensor) -> Tensor:
    """Weighted mean sigmoid BCE (label 1 = replaced)."""
    bce = F.binary_cross_entropy_with_logits(logits.float(), labels, reduction="none")
    return (bce * weights).sum() / (weights.sum() + 1e-6)


def detection_metrics(logits: Tensor, labels: Tensor, weights: Tensor) -> dict[str, Tensor]:
    with torch.no_grad():
        predicted = (logits > 0).float() * weights
        tp = (predicted * labels).sum()
        return {"disc_accuracy": ((predicted == labels).float() * weights).sum() / weights.sum().clamp(min=1),
                "disc_precision": tp / predicted.sum().clamp(min=1),
                "disc_recall": tp / (labels * weights).sum().clamp(min=1),
                "replaced_fraction": (labels * weights).sum() / weights.sum().clamp(min=1)}


class MaskedLM(nn.Module):
    """BERT's masked language modelling, the baseline: the generator network (discriminator-sized) predicts the
    chosen tokens, 80% of them [MASK], 10% random, 10% unchanged; the loss is its cross-entropy there."""

    def __init__(self, model: Electra, special: SpecialIds, max_seq_len: int, mask_prob: float = 0.15):
        super().__init__()
        self.model = model
        self.special = special
        self.mask_prob = mask_prob
        self.max_predictions = max_predictions_per_seq(max_seq_len, mask_prob)
        self.masking: nn.Module = TokenMasking()  # or WholeWordMasking (build_objective)

    def forward(self, input_ids: Tensor, attention_mask: Tensor, token_type_ids: Tensor,
                rng: torch.Generator, word_start: Tensor | None = None) -> tuple[Tensor, dict[str, Tensor]]:
        m = self.masking(input_ids, attention_mask, self.special, self.mask_prob, self.max_predictions, rng,
                         word_start, mask_token_prob=0.8, random_token_prob=0.1,
                         vocab_size=self.model.config.discriminator.vocab_size)
        logits = self.model.generator(m.input_ids, attention_mask, token_type_ids, positions=m.positions)
        loss, acc = masked_lm_loss(logits, m.ids, m.weights)
        return loss, {"loss": loss.detach(), "mlm_loss": loss.detach(), "mlm_accuracy": acc}


class Variant(nn.Module):
    """Shared set-up: masking as the official ELECTRA recipe, the generator's MLM step and sampling."""

    def __init__(self, model: Electra, special: SpecialIds, max_seq_len: int, mask_prob: float = 0.15,
                 generator_weight: float = 1.0, discriminator_weight: float = 50.0, temperature: float = 1.0):
        super().__init__()
        self.model = model
        self.special = special
        self.mask_prob = mask_prob
        self.max_predictions = max_predictions_per_seq(max_seq_len, mask_prob)
        self.generator_weight = generator_weight
        self.discriminator_weight = discriminator_weight
        self.temperature = temperature
        self.step = 0
        self.masking: nn.Module = TokenMasking()  # or WholeWordMasking (build_objective)

    def begin_step(self, step: int, max_steps: int, warmup_steps: int) -> float:
        self.step = step
        return lr_multiplier(step, max_steps, warmup_steps)

    def mask(self, input_ids: Tensor, attention_mask: Tensor, rng: torch.Generator,
             word_start: Tensor | None = None) -> Masked:
        return self.masking(input_ids, attention_mask, self.special, self.mask_prob, self.max_predictions, rng,
                            word_start)

    def corrupt(self, input_ids: Tensor, m: Masked, gen_logits: Tensor, rng: torch.Generator
                ) -> tuple[Tensor, Tensor, Tensor]:
        """Sample replacements: (sampled ids at masked positions, corrupted input, replaced labels)."""
        sampled = sample_from_softmax(gen_logits.detach(), rng, self.temperature)
        fake_ids = scatter_replace(input_ids, m.positions, m.ids, sampled, m.weights)
        return sampled, fake_ids, (fake_ids != input_ids).float()


class MaskedOnlyDetection(Variant):
    """ELECTRA 15%: replaced-token detection with the discriminator's loss on the masked positions only."""

    def forward(self, input_ids: Tensor, attention_mask: Tensor, token_type_ids: Tensor,
                rng: torch.Generator, word_start: Tensor | None = None) -> tuple[Tensor, dict[str, Tensor]]:
        m = self.mask(input_ids, attention_mask, rng, word_start)
        gen_logits = self.model.generator(m.input_ids, attention_mask, token_type_ids, positions=m.positions)
        mlm_loss, mlm_acc = masked_lm_loss(gen_logits, m.ids, m.weights)
        _, fake_ids, labels = self.corrupt(input_ids, m, gen_logits, rng)
        disc_logits = self.model.discriminator(fake_ids, attention_mask, token_type_ids)
        # Only the masked positions count (padding slots of m have weight 0).
        logits_m, labels_m = disc_logits.gather(1, m.positions), labels.gather(1, m.positions)
        disc_loss = detection_loss(logits_m, labels_m, m.weights)
        loss = self.generator_weight * mlm_loss + self.discriminator_weight * disc_loss
        return loss, {"loss": loss.detach(), "mlm_loss": mlm_loss.detach(), "mlm_accuracy": mlm_acc,
                      "disc_loss": disc_loss.detach(), **detection_metrics(logits_m, labels_m, m.weights)}


class ReplaceMLM(Variant):
    """Replace MLM / All-Tokens MLM: a discriminator-sized MLM on generator-corrupted input (§3.2)."""

    def __init__(self, model: Electra, special: SpecialIds, max_seq_len: int, all_tokens: bool = False,
                 **kw: Any):
        super().__init__(model, special, max_seq_len, **kw)
        self.all_tokens = all_tokens
        d = model.config.discriminator
        self.mlm_head = GeneratorHead(d, model.discriminator.encoder.embeddings.word_embeddings.embedding_dim)
        self.mlm_head.apply(init_weights)

    def predict(self, hidden: Tensor) -> Tensor:
        """Vocabulary logits of the discriminator-sized network (output layer tied to the word embeddings)."""
        return self.mlm_head(hidden, self.model.discriminator.encoder.embeddings.word_embeddings.weight)

    def forward(self, input_ids: Tensor, attention_mask: Tensor, token_type_ids: Tensor,
                rng: torch.Generator, word_start: Tensor | None = None) -> tuple[Tensor, dict[str, Tensor]]:
        m = self.mask(input_ids, attention_mask, rng, word_start)
        gen_logits = self.model.generator(m.input_ids, attention_mask, token_type_ids, positions=m.positions)
        gen_loss, gen_acc = masked_lm_loss(gen_logits, m.ids, m.weights)
        _, fake_ids, labels = self.corrupt(input_ids, m, gen_logits, rng)
        hidden = self.model.discriminator.encoder(fake_ids, attention_mask, token_type_ids)
        metrics: dict[str, Tensor] = {"mlm_loss": gen_loss.detach(), "mlm_accuracy": gen_acc}
        if not self.all_tokens:
            h = hidden.gather(1, m.positions[..., None].expand(-1, -1, hidden.shape[-1]))
            main_loss, main_acc = masked_lm_loss(self.predict(h), m.ids, m.weights)
        else:
            main_loss, main_acc, copy = self._all_tokens_loss(hidden, input_ids, fake_ids, attention_mask, m)
            metrics["copy_prob"] = copy
        loss = self.generator_weight * gen_loss + main_loss
        metrics.update({"loss": loss.detach(), "main_mlm_loss": main_loss.detach(), "main_mlm_accuracy": main_acc,
                        "replaced_fraction": (labels * attention_mask).sum() / attention_mask.sum()})
        return loss, metrics

    def _all_tokens_loss(self, hidden: Tensor, input_ids: Tensor, fake_ids: Tensor, attention_mask: Tensor,
                         m: Masked) -> tuple[Tensor, Tensor, Tensor]:
        """-log p(original) at every real token, p = D·[input = original] + (1 - D)·softmax; accuracy at the
        masked positions (argmax of the mixture); mean copy probability."""
        logits = self.predict(hidden).float()  # (batch, seq, vocab)
        z = self.model.discriminator.head(hidden).float()  # replaced-logit: D = sigmoid(-z)
        log_softmax = logits.log_softmax(-1)
        lp_orig = log_softmax.gather(-1, input_ids[..., None]).squeeze(-1)
        log_copy, log_gen = F.logsigmoid(-z), F.logsigmoid(z)
        same = fake_ids == input_ids
        log_p = torch.where(same, torch.logaddexp(log_copy, log_gen + lp_orig), log_gen + lp_orig)
        real = attention_mask.float()
        loss = -(log_p * real).sum() / (real.sum() + 1e-6)
        with torch.no_grad():
            mix = log_softmax + log_gen[..., None]
            mix.scatter_(-1, fake_ids[..., None], torch.logaddexp(mix.gather(-1, fake_ids[..., None]),
                                                                   log_copy[..., None]))
            pred = mix.argmax(-1).gather(1, m.positions)
            acc = ((pred == m.ids).float() * m.weights).sum() / m.weights.sum().clamp(min=1)
            copy = (log_copy.exp() * real).sum() / real.sum()
        return loss, acc, copy


class TwoStage(Variant):
    """Two-stage training: generator-only MLM, then the discriminator (initialised from the generator) with the
    generator frozen. Needs a generator of the discriminator's shape (see :func:`adjust_model_config`)."""

    def __init__(self, model: Electra, special: SpecialIds, max_seq_len: int, generator_steps: int, **kw: Any):
        super().__init__(model, special, max_seq_len, **kw)
        g, d = model.generator.encoder, model.discriminator.encoder
        shapes = {k: v.shape for k, v in g.state_dict().items()}
        if shapes != {k: v.shape for k, v in d.state_dict().items()}:
            raise ElectraError("two-stage training needs the generator and discriminator to have the same shape "
                               "(--generator-size 1.0)")
        self.generator_steps = generator_steps

    def begin_step(self, step: int, max_steps: int, warmup_steps: int) -> float:
        self.step = step
        n = self.generator_steps
        if step == n:
            self.initialise_discriminator()
        if step < n:
            return lr_multiplier(step, n, min(warmup_steps, n))
        return lr_multiplier(step - n, max_steps - n, min(warmup_steps, max_steps - n))

    @torch.no_grad()
    def initialise_discriminator(self) -> None:
        """Copy the generator's encoder (embeddings, projection, layers) into the discriminator's."""
        self.model.discriminator.encoder.load_state_dict(self.model.generator.encoder.state_dict())

    def forward(self, input_ids: Tensor, attention_mask: Tensor, token_type_ids: Tensor,
                rng: torch.Generator, word_start: Tensor | None = None) -> tuple[Tensor, dict[str, Tensor]]:
        gen, disc = self.model.generator, self.model.discriminator
        m = self.mask(input_ids, attention_mask, rng, word_start)
        stage_one = self.step < self.generator_steps
        with torch.set_grad_enabled(stage_one and torch.is_grad_enabled()):
            gen_logits = gen(m.input_ids, attention_mask, token_type_ids, positions=m.positions)
            mlm_loss, mlm_acc = masked_lm_loss(gen_logits, m.ids, m.weights)
        zero = torch.zeros((), device=input_ids.device)
        if stage_one:
            return mlm_loss, {"loss": mlm_loss.detach(), "mlm_loss": mlm_loss.detach(), "mlm_accuracy": mlm_acc,
                              "disc_loss": zero, "disc_accuracy": zero, "disc_precision": zero,
                              "disc_recall": zero, "replaced_fraction": zero, "stage": zero + 1}
        _, fake_ids, labels = self.corrupt(input_ids, m, gen_logits, rng)
        disc_logits = disc(fake_ids, attention_mask, token_type_ids)
        real = attention_mask.float()
        disc_loss = detection_loss(disc_logits, labels, real)
        loss = self.discriminator_weight * disc_loss
        return loss, {"loss": loss.detach(), "mlm_loss": mlm_loss.detach(), "mlm_accuracy": mlm_acc,
                      "disc_loss": disc_loss.detach(), **detection_metrics(disc_logits, labels, real),
                      "stage": zero + 2}


class Adversarial(Variant):
    """The generator maximises the discriminator's loss on its samples, trained with REINFORCE (Appendix F)."""

    def __init__(self, model: Electra, special: SpecialIds, max_seq_len: int, mlm_steps: int = 0,
                 baseline: str = "learned", entropy_weight: float = 0.0, baseline_decay: float = 0.99, **kw: Any):
        super().__init__(model, special, max_seq_len, **kw)
        self.mlm_steps = mlm_steps
        self.baseline_kind = baseline
        self.entropy_weight = entropy_weight
        self.baseline_decay = baseline_decay
        if baseline == "learned":
            self.baseline = nn.Linear(model.config.generator.hidden_size, 1)
            self.baseline.apply(init_weights)
        self.register_buffer("mean_reward", torch.zeros(()))
        self.register_buffer("mean_reward_steps", torch.zeros(()))

    def forward(self, input_ids: Tensor, attention_mask: Tensor, token_type_ids: Tensor,
                rng: torch.Generator, word_start: Tensor | None = None) -> tuple[Tensor, dict[str, Tensor]]:
        gen, disc = self.model.generator, self.model.discriminator
        m = self.mask(input_ids, attention_mask, rng, word_start)
        hidden = gen.encoder(m.input_ids, attention_mask, token_type_ids)
        h = hidden.gather(1, m.positions[..., None].expand(-1, -1, hidden.shape[-1]))
        gen_logits = gen.head(h, gen.encoder.embeddings.word_embeddings.weight)
        mlm_loss, mlm_acc = masked_lm_loss(gen_logits, m.ids, m.weights)
        sampled, fake_ids, labels = self.corrupt(input_ids, m, gen_logits, rng)
        disc_logits = disc(fake_ids, attention_mask, token_type_ids)
        real = attention_mask.float()
        bce = F.binary_cross_entropy_with_logits(disc_logits.float(), labels, reduction="none")
        disc_loss = (bce * real).sum() / (real.sum() + 1e-6)

        # REINFORCE: reward = the discriminator's loss at each masked position (its sample fooled it or not).
        w = m.weights
        denom = w.sum() + 1e-6
        reward = bce.detach().gather(1, m.positions)
        log_probs = (gen_logits.float() / self.temperature).log_softmax(-1)
        log_p_sample = log_probs.gather(-1, sampled[..., None]).squeeze(-1)
        entropy = -(log_probs.exp() * log_probs).sum(-1)
        if self.baseline_kind == "learned":
            b_logit = self.baseline(h.detach()).squeeze(-1).float()
            b = F.softplus(-b_logit).detach()  # b = -log sigmoid(w·h)
            baseline_loss = (F.binary_cross_entropy_with_logits(b_logit, torch.exp(-reward), reduction="none")
                             * w).sum() / denom
        else:
            b = self.mean_reward.clone().expand_as(reward)  # the mean before this batch updates it
            baseline_loss = torch.zeros((), device=input_ids.device)
            if self.training:
                with torch.no_grad():
                    batch_mean = (reward * w).sum() / denom
                    self.mean_reward_steps += 1
                    decay = torch.clamp(1 - 1 / self.mean_reward_steps, max=self.baseline_decay)
                    self.mean_reward.mul_(decay).add_((1 - decay) * batch_mean)
        pg_loss = -(log_p_sample * (reward - b) * w).sum() / denom
        mean_entropy = (entropy * w).sum() / denom
        if self.step < self.mlm_steps:
            gen_loss = mlm_loss + baseline_loss  # warm start: maximum likelihood; the baseline learns meanwhile
        else:
            gen_loss = pg_loss + baseline_loss - self.entropy_weight * mean_entropy
        loss = self.generator_weight * gen_loss + self.discriminator_weight * disc_loss
        metrics = {"loss": loss.detach(), "mlm_loss": mlm_loss.detach(), "mlm_accuracy": mlm_acc,
                   "gen_entropy": mean_entropy.detach(), "pg_loss": pg_loss.detach(),
                   "baseline_loss": baseline_loss.detach(), "reward": ((reward * w).sum() / denom),
                   "disc_loss": disc_loss.detach(), **detection_metrics(disc_logits, labels, real)}
        return loss, metrics
