"""Tests of the edge agent's capture, compression, recording, actions and demo media."""
