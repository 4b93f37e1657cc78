from doit_tinyml import load_project
globals().update(load_project("tinyml.toml"))
