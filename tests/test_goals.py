from brainml.goals import GOALS, POINTING_GAME_GOAL, check_goals


def test_each_goal_is_met_only_at_or_above_it_and_unmeasured_is_never_met():
    checks = check_goals("detect", {"recall": 0.99, "specificity": 0.9499})
    assert [(check.measure, check.met) for check in checks] == [("recall", True), ("specificity", False)]
    assert [check.goal for check in checks] == [GOALS["detect"]["recall"], GOALS["detect"]["specificity"]]
    unmeasured = check_goals("classify", {"accuracy": 0.97})
    assert [(check.measure, check.value, check.met) for check in unmeasured] == [("accuracy", 0.97, True),
                                                                               ("macro_f1", None, False)]
    assert unmeasured[1].to_dict() == {"measure": "macro_f1", "goal": 0.95, "value": None, "met": False}


def test_the_pointing_game_goal_takes_the_best_methods_figure_over_all_tumors():
    table = {"gradcam": {"all": {"pointing_game": 0.80}, "glioma": {"pointing_game": 0.99}},
             "layercam": {"all": {"pointing_game": 0.86}}, "smoothgrad": {"glioma": {"pointing_game": 1.0}}}
    check = check_goals("detect", {}, {"table": table})[-1]
    assert (check.measure, check.value, check.method, check.met) == ("pointing_game", 0.86, "layercam", True)
    assert check.goal == POINTING_GAME_GOAL
    assert check.to_dict()["method"] == "layercam"
    assert [check.measure for check in check_goals("detect", {}, {})] == ["recall", "specificity"]
