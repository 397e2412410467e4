"""The run folder's PNG of the training curves."""

from __future__ import annotations

from pathlib import Path

from ..files import write_atomic


def plot_metrics(rows: list[dict], png: Path) -> None:
    """One figure of the per-epoch ``rows`` (as in metrics.jsonl): loss, token accuracy, dev BLEU-4 and CIDEr."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [r["epoch"] for r in rows]
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    panels = (("loss", ["train_loss", "dev_loss"]), ("token accuracy", ["train_token_accuracy", "dev_token_accuracy"]),
              ("dev caption metrics", ["dev_BLEU-4", "dev_CIDEr"]))
    for ax, (title, keys) in zip(axes, panels):
        for k in keys:
            ax.plot(epochs, [r.get(k) for r in rows], marker="o", label=k)
        ax.set_title(title)
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    try:
        write_atomic(png, lambda tmp: fig.savefig(tmp, dpi=90, format="png"))
    finally:
        plt.close(fig)
