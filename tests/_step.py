"""A training step with the lattice convolution against the same step on plain filled windows."""

from __future__ import annotations

import torch

#: Network and loss settings of the step tests (small network, both modalities, partners from all spots).
STEP_PARAMS = {
    "c_hid": 8, "latent_dim": 4, "kernel_size": 3, "n_ensemble": 3, "dropout": 0.3, "rec_alpha": 1.0,
    "triplet_alpha": 1.0, "lr": 1e-3, "weight_decay": 1e-6, "n_repeats": 1, "multi_triplet": True,
    "partners": "all",
}  # fmt: skip


def assert_step_equals_plain_windows(module, anchors: torch.Tensor) -> torch.Tensor:
    """Loss and every gradient of one step equal those of the step that convolves the filled windows.

    Both steps draw the same partners and dropout masks (same seed). Returns the loss.
    """

    def step(plain: bool):
        if plain:
            module.summarize = lambda spots: module.network.encoder.summarize(module.windows(spots))
        else:
            module.__dict__.pop("summarize", None)
        torch.manual_seed(3)
        loss = module.step_loss(anchors).loss
        return loss, torch.autograd.grad(loss, list(module.network.parameters()))

    loss, grads = step(plain=False)
    loss_plain, grads_plain = step(plain=True)
    torch.testing.assert_close(loss, loss_plain, rtol=1e-12, atol=0)
    # on the scale of all gradients: the conv bias gradient is 0 up to rounding (batch-norm removes it)
    scale = max(float(g.abs().max()) for g in grads_plain)
    for (name, _), a, b in zip(module.network.named_parameters(), grads, grads_plain, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-12 * scale, msg=name)
    return loss
