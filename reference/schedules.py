"""Learning-rate schedules (interface stub; the full module replaces it)."""

from __future__ import annotations

import numpy as np


class LearningRateSchedule:
    """Base class: ``schedule(step)`` returns the learning rate at ``step``."""

    def __call__(self, step):
        raise NotImplementedError

    def get_config(self) -> dict:
        raise NotImplementedError

    @classmethod
    def from_config(cls, config):
        return cls(**config)


class ExponentialDecay(LearningRateSchedule):
    def __init__(self, initial_learning_rate, decay_steps, decay_rate, staircase=False, name=None):
        self.initial_learning_rate = initial_learning_rate
        self.decay_steps = decay_steps
        self.decay_rate = decay_rate
        self.staircase = staircase
        self.name = name

    def __call__(self, step):
        lr = np.asarray(self.initial_learning_rate, dtype=np.float32)
        p = np.asarray(step, dtype=np.float32) / np.float32(self.decay_steps)
        if self.staircase:
            p = np.floor(p)
        return lr * np.power(np.float32(self.decay_rate), p)

    def get_config(self):
        return {
            "initial_learning_rate": self.initial_learning_rate,
            "decay_steps": self.decay_steps,
            "decay_rate": self.decay_rate,
            "staircase": self.staircase,
            "name": self.name,
        }


def serialize(schedule, use_legacy_format=False):
    return {
        "module": "keras.optimizers.schedules",
        "class_name": type(schedule).__name__,
        "config": schedule.get_config(),
        "registered_name": None,
    }


def deserialize(config, custom_objects=None):
    classes = {"ExponentialDecay": ExponentialDecay, **(custom_objects or {})}
    return classes[config["class_name"]].from_config(config["config"])
