"""`gsv-train` commands, one module each; importing a module registers its command on `cli.app`."""

import gptsovits_train.commands.download
import gptsovits_train.commands.export
import gptsovits_train.commands.fit
import gptsovits_train.commands.prepare
import gptsovits_train.commands.report  # noqa: F401
