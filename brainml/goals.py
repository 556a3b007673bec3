"""BrainML's goals for a model that learned from real MRI, on its held-out test part, and whether a card's measured
figures meet them. Checked from the figures every time they are shown, so no card claims a goal it does not meet."""

from __future__ import annotations

from dataclasses import dataclass

# A missed tumor costs far more than a false alarm: the detector's recall goal is the strict one.
GOALS = {
    "detect": {"recall": 0.99, "specificity": 0.95},
    "classify": {"accuracy": 0.95, "macro_f1": 0.95},
}
# Where the heatmaps point: the pointing game of the best method over the test tumor slices with lesion masks.
POINTING_GAME_GOAL = 0.85


@dataclass(frozen=True)
class GoalCheck:
    measure: str
    goal: float
    value: float | None  # None: not measured
    method: str | None = None  # the heatmap method the pointing game's best value came from

    @property
    def met(self) -> bool:
        return self.value is not None and self.value >= self.goal

    def to_dict(self) -> dict:
        return {"measure": self.measure, "goal": self.goal, "value": self.value, "met": self.met,
                **({"method": self.method} if self.method else {})}


def check_goals(task: str, metrics: dict, localisation: dict | None = None) -> list[GoalCheck]:
    """Each of the task's goals against ``metrics`` (a card's test metrics), then the pointing-game goal against
    ``localisation`` (a card's ``localisation``) when heatmaps were measured."""
    checks = [GoalCheck(name, goal, metrics.get(name)) for name, goal in GOALS.get(task, {}).items()]
    table = (localisation or {}).get("table") or {}
    overall = {method: rows["all"]["pointing_game"] for method, rows in table.items()
               if (rows.get("all") or {}).get("pointing_game") is not None}
    if overall:
        best = max(overall, key=overall.get)
        checks.append(GoalCheck("pointing_game", POINTING_GAME_GOAL, overall[best], best))
    return checks
