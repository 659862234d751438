"""The control API: ``cmamd ctl`` talking to the running daemon over a unix socket."""
