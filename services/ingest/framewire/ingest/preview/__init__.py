"""The live preview: a small web page showing every stream's figures and its frames with boxes.

Off unless ``--preview-port`` is given (``framewire demo`` turns it on). See
``docs/preview-and-tracking.md``.
"""

from framewire.ingest.preview.access import PreviewAccess, preview_access
from framewire.ingest.preview.board import PreviewBoard
from framewire.ingest.preview.config import PreviewConfig
from framewire.ingest.preview.web import PreviewServer, start_preview

__all__ = [
    "PreviewAccess",
    "PreviewBoard",
    "PreviewConfig",
    "PreviewServer",
    "preview_access",
    "start_preview",
]
