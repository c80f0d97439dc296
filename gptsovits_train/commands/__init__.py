"""`gsv-train` commands, one module each; importing a module registers its command on `cli.app`."""
