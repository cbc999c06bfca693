"""Mask losses of EmoSEM (paper Eq. 5): Dice + Focal on saliency logits against soft or binary targets."""

import torch
import torch.nn.functional as F


def dice_loss(logits: torch.Tensor, targets: torch.Tensor, eps: float = 1.0) -> torch.Tensor:
    """Soft Dice loss (Milletari et al., 2016), one value per sample.

    Args:
        logits: `(B, H, W)` saliency logits.
        targets: `(B, H, W)` targets in [0, 1] (pseudo heat maps are soft, GT masks binary).
    Returns:
        `(B,)` losses; `eps` keeps an empty prediction of an empty target at zero loss.
    """
    probs = logits.sigmoid().flatten(1)
    targets = targets.flatten(1)
    intersection = (probs * targets).sum(-1)
    return 1.0 - (2.0 * intersection + eps) / (probs.sum(-1) + targets.sum(-1) + eps)


def sigmoid_focal_loss(
    logits: torch.Tensor, targets: torch.Tensor, alpha: float = 0.25, gamma: float = 2.0
) -> torch.Tensor:
    """Focal loss (Lin et al., 2017) averaged over pixels, one value per sample.

    Args:
        logits, targets: `(B, H, W)`; targets in [0, 1].
        alpha: weight of the foreground term (negative disables weighting).
        gamma: focusing exponent; down-weights the many easy background pixels.
    Returns:
        `(B,)` losses.
    """
    probs = logits.sigmoid()
    ce = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    p_t = probs * targets + (1 - probs) * (1 - targets)
    loss = ce * (1 - p_t) ** gamma
    if alpha >= 0:
        loss = (alpha * targets + (1 - alpha) * (1 - targets)) * loss
    return loss.flatten(1).mean(-1)
