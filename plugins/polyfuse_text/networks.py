"""Text encoder backbones (a small Transformer or a local Hugging Face model) and the GRU decoder.

Every network reads a padded batch of token ids (B, T) with ``lengths`` (B,) that count the
valid ids of each row, bos and eos included.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from torch import nn

from polyfuse.errors import ConfigError
from polyfuse.modality import Decoder, ModalityBatch

from .tokenizer import local_folder

logger = logging.getLogger(__name__)

DEFAULT_BACKBONE = "default"


class TransformerBackbone(nn.Module):
    """Token and learned position embeddings, a pre-norm Transformer encoder and masked mean pooling."""

    def __init__(
        self,
        vocab_size: int,
        max_length: int,
        embedding_dim: int,
        num_layers: int,
        num_heads: int,
        dropout: float,
        feature_dim: int,
    ):
        super().__init__()
        self.max_length = max_length
        self.tokens = nn.Embedding(vocab_size, embedding_dim)
        self.positions = nn.Embedding(max_length, embedding_dim)
        layer = nn.TransformerEncoderLayer(
            embedding_dim,
            num_heads,
            dim_feedforward=4 * embedding_dim,
            dropout=dropout,
            activation="gelu",
            batch_first=True,
            norm_first=True,
        )
        # Pre-norm layers leave the residual stream unnormalised, hence the final LayerNorm.
        # Nested tensors do not support norm_first, so they are turned off to avoid a warning.
        self.transformer = nn.TransformerEncoder(
            layer, num_layers, norm=nn.LayerNorm(embedding_dim), enable_nested_tensor=False
        )
        self.project = nn.Sequential(nn.Linear(embedding_dim, feature_dim), nn.SiLU())

    def forward(self, data: torch.Tensor, lengths: torch.Tensor | None) -> torch.Tensor:
        lengths = _require_lengths(lengths)
        steps = data.shape[1]
        if steps > self.max_length:
            raise ValueError(
                f"text batch has {steps} positions but the backbone was built for max_length {self.max_length}. "
                "Prepare the text with TextModality.prepare, which truncates to max_length"
            )
        positions = torch.arange(steps, device=data.device)
        hidden = self.tokens(data) + self.positions(positions)  # (B, T, E)
        padding = padding_mask(lengths, steps)  # (B, T)
        hidden = self.transformer(hidden, src_key_padding_mask=padding)  # (B, T, E)
        return self.project(masked_mean(hidden, padding))  # (B, feature_dim)


class PretrainedBackbone(nn.Module):
    """A Hugging Face encoder model from a local folder, mean-pooled over valid tokens, then projected.

    The model must take ``input_ids`` and ``attention_mask`` and return ``last_hidden_state``,
    as BERT-family and sentence-transformers models do. With ``freeze`` its weights keep
    ``requires_grad`` False and it stays in eval mode, so its dropout adds no noise to the
    features. Only the projection trains then.
    """

    def __init__(self, path: str | Path, feature_dim: int, *, freeze: bool, max_length: int, vocab_size: int):
        super().__init__()
        from transformers import AutoModel

        folder = local_folder(path, "backbone", DEFAULT_BACKBONE)
        try:
            self.model = AutoModel.from_pretrained(folder, local_files_only=True)
        except (OSError, ValueError) as error:
            raise ConfigError(
                f"backbone: no Hugging Face model could be loaded from {folder} ({error}). Point backbone at a folder "
                f"written by a model's save_pretrained (with config.json and weights), or set it to {DEFAULT_BACKBONE!r}"
            ) from error
        _check_model_fits(self.model, folder, max_length, vocab_size)
        self.frozen = freeze
        if freeze:
            self.model.requires_grad_(False)
            self.model.eval()
        hidden_size = self.model.config.hidden_size
        self.project = nn.Sequential(nn.Linear(hidden_size, feature_dim), nn.SiLU())
        logger.info(
            "Loaded pretrained text backbone %s from %s (hidden_size %d, %s)",
            type(self.model).__name__,
            folder,
            hidden_size,
            "frozen" if freeze else "trainable",
        )

    def forward(self, data: torch.Tensor, lengths: torch.Tensor | None) -> torch.Tensor:
        lengths = _require_lengths(lengths)
        padding = padding_mask(lengths, data.shape[1])  # (B, T)
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.frozen):
            output = self.model(input_ids=data, attention_mask=(~padding).long())
        return self.project(masked_mean(output.last_hidden_state, padding))  # (B, T, H) -> (B, feature_dim)

    def train(self, mode: bool = True) -> PretrainedBackbone:
        super().train(mode)
        if self.frozen:
            self.model.eval()
        return self


class GRUDecoder(Decoder):
    """An autoregressive GRU over token ids, conditioned on the latent at every step.

    The latent sets the initial hidden state (linear + tanh) and is concatenated with the
    previous token's embedding at each step. pad and bos are never targets, so their logits
    are masked to -inf (unless an id doubles as eos). Training and generation therefore
    use the same distribution.
    """

    def __init__(
        self,
        latent_dim: int,
        vocab_size: int,
        embedding_dim: int,
        hidden_dim: int,
        max_length: int,
        *,
        pad_id: int,
        bos_id: int,
        eos_id: int,
        dropout: float = 0.0,
    ):
        super().__init__()
        self.max_length = max_length
        self.pad_id, self.bos_id, self.eos_id = pad_id, bos_id, eos_id
        self.tokens = nn.Embedding(vocab_size, embedding_dim)
        self.dropout = nn.Dropout(dropout)
        self.initial = nn.Linear(latent_dim, hidden_dim)
        self.gru = nn.GRU(embedding_dim + latent_dim, hidden_dim, batch_first=True)
        self.output = nn.Linear(hidden_dim, vocab_size)
        blocked = torch.zeros(vocab_size, dtype=torch.bool)
        blocked[[pad_id, bos_id]] = True
        blocked[eos_id] = False
        # Derived from the ids, so it stays out of the state dict.
        self.register_buffer("blocked", blocked, persistent=False)

    def forward(
        self, latents: torch.Tensor, inputs: torch.Tensor, hidden: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Return logits (B, T, V) for input ids (B, T) and the GRU state (1, B, H) after them.

        Pass the returned state as ``hidden`` to continue a sequence. With ``None`` the state
        starts from the latents.
        """
        if hidden is None:
            hidden = torch.tanh(self.initial(latents)).unsqueeze(0)  # (B, H) -> (1, B, H), with nn.GRU's layer axis first
        embedded = self.dropout(self.tokens(inputs))  # (B, T, E)
        repeated = latents.unsqueeze(1).expand(-1, inputs.shape[1], -1)  # (B, D) -> (B, T, D)
        output, hidden = self.gru(torch.cat([embedded, repeated], dim=-1), hidden)  # (B, T, H)
        logits = self.output(output).masked_fill(self.blocked, float("-inf"))  # (B, T, V)
        return logits, hidden

    def log_likelihood(self, latents: torch.Tensor, batch: ModalityBatch) -> torch.Tensor:
        """Return log p(text | z) per row (B,) under teacher forcing.

        Inputs are ``[bos] + content`` and targets ``content + [eos]``. Padding comes after
        the valid ids and the GRU is causal, so padding cannot change the valid positions,
        and it is left out of the sum.
        """
        lengths = _require_lengths(batch.lengths)
        inputs, targets = batch.data[:, :-1], batch.data[:, 1:]  # (B, T - 1) each
        logits, _ = self(latents, inputs)
        log_probs = logits.log_softmax(dim=-1).gather(-1, targets.unsqueeze(-1)).squeeze(-1)  # (B, T - 1)
        positions = torch.arange(targets.shape[1], device=targets.device)
        valid = positions.unsqueeze(0) < (lengths - 1).unsqueeze(1)  # (B, T - 1)
        # masked_fill rather than a product, because padded targets have log-probability -inf.
        return log_probs.masked_fill(~valid, 0.0).sum(dim=1)

    @torch.no_grad()
    def generate(
        self, latents: torch.Tensor, *, temperature: float = 0.0, generator: torch.Generator | None = None
    ) -> ModalityBatch:
        """Decode latents (B, D) into id sequences (B, T) that start with bos and end with eos.

        Each row stops at its first eos. A row that reaches ``max_length`` ids gets eos in
        its last slot, so its framing matches the truncation rule. The loop ends when every
        row has finished, and rows that end early are padded with ``pad_id``.
        """
        if not temperature >= 0:
            raise ValueError(f"temperature must be >= 0 (0 decodes greedily), got {temperature}")
        batch_size, device = latents.shape[0], latents.device
        tokens = torch.full((batch_size, self.max_length), self.pad_id, dtype=torch.long, device=device)
        tokens[:, 0] = self.bos_id
        lengths = torch.zeros(batch_size, dtype=torch.long, device=device)
        finished = torch.zeros(batch_size, dtype=torch.bool, device=device)
        previous, hidden = tokens[:, :1], None
        width = self.max_length
        for step in range(1, self.max_length):
            logits, hidden = self(latents, previous, hidden)  # (B, 1, V)
            if step == self.max_length - 1:
                chosen = torch.full_like(lengths, self.eos_id)
            else:
                chosen = _choose(logits[:, -1], temperature, generator)
            chosen = chosen.masked_fill(finished, self.pad_id)
            tokens[:, step] = chosen
            ended = ~finished & (chosen == self.eos_id)
            lengths = torch.where(ended, step + 1, lengths)
            finished |= ended
            if bool(finished.all()):
                width = step + 1
                break
            previous = chosen.unsqueeze(1)  # (B,) -> (B, 1)
        present = torch.ones(batch_size, dtype=torch.bool, device=device)
        return ModalityBatch(tokens[:, :width], present, lengths)


def padding_mask(lengths: torch.Tensor, steps: int) -> torch.Tensor:
    """Return a mask (B, T) that is True at padding positions.

    Lengths are clamped to at least 1 so that a row of length 0 still attends to one
    position. A row with every key masked would make attention return NaN. The model never
    encodes absent rows, so this only guards direct calls.
    """
    positions = torch.arange(steps, device=lengths.device)
    return positions.unsqueeze(0) >= lengths.clamp_min(1).unsqueeze(1)


def masked_mean(hidden: torch.Tensor, padding: torch.Tensor) -> torch.Tensor:
    """Average hidden states (B, T, C) over the positions that ``padding`` (B, T) leaves unmarked, giving (B, C)."""
    weights = (~padding).unsqueeze(-1).to(hidden.dtype)  # (B, T, 1)
    return (hidden * weights).sum(dim=1) / weights.sum(dim=1).clamp_min(1.0)


def _choose(logits: torch.Tensor, temperature: float, generator: torch.Generator | None) -> torch.Tensor:
    """Pick one id per row from logits (B, V), by argmax at temperature 0 and by sampling otherwise."""
    if temperature == 0:
        return logits.argmax(dim=-1)
    probabilities = torch.softmax(logits / temperature, dim=-1)
    return torch.multinomial(probabilities, 1, generator=generator).squeeze(1)  # (B, 1) -> (B,)


def _require_lengths(lengths: torch.Tensor | None) -> torch.Tensor:
    if lengths is None:
        raise ValueError(
            "text batches need lengths (B,) but got None. Build batches with TextModality.collate, which always fills them"
        )
    return lengths


def _check_model_fits(model: nn.Module, folder: Path, max_length: int, vocab_size: int) -> None:
    limit = getattr(model.config, "max_position_embeddings", None)
    if limit is not None and max_length > limit:
        raise ConfigError(
            f"max_length {max_length} exceeds the {limit} positions of the backbone in {folder}. Set max_length <= {limit}"
        )
    embeddings = model.get_input_embeddings().num_embeddings
    if vocab_size > embeddings:
        raise ConfigError(
            f"the tokenizer has {vocab_size} ids but the backbone in {folder} embeds only {embeddings}. "
            "Use the tokenizer saved with the backbone (leave tokenizer at 'byte' to use the backbone's folder)"
        )
