"""The data layer: a pooled `Db`, named SQL templates, whole-file scripts, error hints."""

from cruddur.db.pool import Db, InvalidText
from cruddur.db.scripts import ScriptError, run_script
from cruddur.db.templates import packaged_script, template

__all__ = ["Db", "InvalidText", "ScriptError", "packaged_script", "run_script", "template"]
