"""What fresh requests cost: live prices, and the Batch API's discount on the batched ones."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from chartdistill.config import Section
from chartdistill.llm.cache import ClientStats


class PriceTable(Section):
    """USD per million tokens (live requests), for the cost estimates in the metrics."""

    input_per_mtok: float = 0.0
    output_per_mtok: float = 0.0
    # Fraction off the live price for requests sent through a Batch API (OpenAI: 0.5).
    batch_discount: float = Field(default=0.5, ge=0.0, le=1.0)


def _usd(prompt_tokens: int, completion_tokens: int, prices: PriceTable) -> float:
    usd = prompt_tokens * prices.input_per_mtok + completion_tokens * prices.output_per_mtok
    return usd / 1e6


def cost_summary(stats: ClientStats, prices: PriceTable) -> dict[str, Any]:
    """`cost_usd`: what the fresh requests cost (batched ones at the batch price);
    `cost_live_usd`: the same tokens had every request been sent live."""
    live = _usd(stats.prompt_tokens, stats.completion_tokens, prices)
    batched = _usd(stats.batch_prompt_tokens, stats.batch_completion_tokens, prices)
    return {
        "cost_usd": round(live - batched * prices.batch_discount, 6),
        "cost_live_usd": round(live, 6),
        "batch_prompt_tokens": stats.batch_prompt_tokens,
        "batch_completion_tokens": stats.batch_completion_tokens,
    }
