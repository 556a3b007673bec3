import os

import pytest

# Quiet TensorFlow's start-up chatter in test logs; errors still show.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


# A tiny synthetic set and a detector and a classifier trained on it for a few steps, shared by the training and
# command-line tests (training them once per run, not once per module).
@pytest.fixture(scope="session")
def tiny_set(tmp_path_factory):
    from brainml import synth

    root = tmp_path_factory.mktemp("synth")
    return synth.generate_dataset(root, 48, seed=11, config=synth.SynthConfig(size=64), workers=1)


@pytest.fixture(scope="session")
def tiny_detector(tiny_set, tmp_path_factory):
    from brainml.train import TrainConfig, train

    out = tmp_path_factory.mktemp("models") / "detector"
    config = TrainConfig(task="detect", data=str(tiny_set), out=str(out), epochs=2, batch_size=8, size=32, seed=0, val_split=0.25)
    return train(config, log=lambda line: None)


@pytest.fixture(scope="session")
def tiny_classifier(tiny_set, tmp_path_factory):
    from brainml.train import TrainConfig, train

    out = tmp_path_factory.mktemp("models") / "classifier"
    config = TrainConfig(task="classify", data=str(tiny_set), out=str(out), epochs=1, batch_size=8, size=32, val_split=0.25)
    return train(config, log=lambda line: None)


def pytest_collection_modifyitems(items):
    """The app's pages (AppTest) and the real browser are slow by nature: mark them so, for the quick lane."""
    for item in items:
        if item.get_closest_marker("browser") or "app" in item.path.parent.parts[-1:]:
            item.add_marker(pytest.mark.slow)
