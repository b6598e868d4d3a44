"""The commands, a module per concern; the root app (:mod:`..app`) imports only the
module of the command invoked (see :data:`..spec.COMMANDS`). Each module registers
its commands on its own ``app``."""
