"""Publication channels: where a cut release goes besides the node itself."""
