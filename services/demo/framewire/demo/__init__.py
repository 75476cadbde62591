"""``framewire demo``: the whole loop on one machine, and the video it runs on.

Its own home, apart from the services it drives: ``framewire.common`` and the
edge agent never import it, so a device's agent never loads demo code or its
apt and scikit-image fetching. ``command`` is the subcommand; ``media`` finds
or fetches the demo video.
"""
