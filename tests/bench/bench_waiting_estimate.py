"""Waiting-time estimate against simulated MPP days: error of the kiosk's wait_min vs actual waits."""

from __future__ import annotations

import statistics

from controller.domain.waiting import evaluate_day


def main() -> None:
    rows = [evaluate_day(seed) for seed in range(1, 11)]
    print("  seed  tickets  mean wait  MAE    MAE/mean  within 5 min  bias   naive MAE  simple MAE   (minutes)")
    for seed, r in enumerate(rows, 1):
        print(f"  {seed:4d}  {r['tickets']:7d}  {r['mean_wait']:9.1f}  {r['mae']:5.1f}  {r['mae_ratio']:8.2f}"
              f"  {r['within_5min']:12.0%}  {r['bias']:+5.1f}  {r['mae_naive']:9.1f}  {r['mae_simple']:10.1f}")
    print(f"  mean over days: MAE {statistics.mean(r['mae'] for r in rows):.1f} min, "
          f"MAE/mean wait {statistics.mean(r['mae_ratio'] for r in rows):.2f}, "
          f"naive (ahead × SLA) {statistics.mean(r['mae_naive'] for r in rows):.1f} min")


if __name__ == "__main__":
    main()
