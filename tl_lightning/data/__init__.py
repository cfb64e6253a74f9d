"""Data layer: canonical schema, loaders, renderers, call parser, ToolWorld and datamodules."""
