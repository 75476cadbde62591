"""The edge agent: capture, compression, one gRPC stream, results, recording and actions.

``EdgeAgent(server="host:50051", source="video.mp4").run(on_result=print)`` is the
Python API; ``edge-agent`` is the command.
"""

from framewire.edge_agent.agent import EdgeAgent
from framewire.edge_agent.config import AgentConfig
from framewire.edge_agent.errors import (
    AgentError,
    OutputFailed,
    ServerUnreachable,
    SourceFailed,
    StreamRefused,
)
from framewire.edge_agent.output import ResultEvent, Summary

__all__ = [
    "AgentConfig",
    "AgentError",
    "EdgeAgent",
    "OutputFailed",
    "ResultEvent",
    "ServerUnreachable",
    "SourceFailed",
    "StreamRefused",
    "Summary",
]
