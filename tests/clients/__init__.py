"""Interop tests: the Go, Node and C++ clients in clients/ against a real `framewire serve`."""
