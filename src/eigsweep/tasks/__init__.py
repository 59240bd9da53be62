"""Tasks: each module defines one Task subclass, registered by name in eigsweep.registry."""
