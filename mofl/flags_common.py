"""Flags that several binaries share, defined once with one help text (mofl.train, tools/*).

Every binary that takes a face asset defines `--asset` with `define_asset_flag` and resolves its
value with `mofl.facemodel.default_assets.load_asset`, so `--asset=PATH.npz`, `--asset=default`
and `--asset=default:N` mean the same everywhere.
"""
import sys

from absl import flags

ASSET_HELP = ('Face asset: an asset .npz (tools.build_assets), default, or default:N (the '
              'default asset decimated to about N vertices)')


def define_asset_flag(when_unset='', required=False, flag_values=flags.FLAGS):
    """Defines the string flag `--asset` (default None) with the shared help text.

    Args:
        when_unset: what the binary does without `--asset` (appended to the help text);
            '' for a required flag.
        required: whether the flag must be given.
        flag_values: the FlagValues to define it in.

    Returns:
        The flag holder.
    """
    help_text = f'{ASSET_HELP}; {when_unset}' if when_unset else f'{ASSET_HELP}.'
    # Credit the flag to the binary that asked for it, so that its --help lists it (absl files a
    # flag under the module that calls DEFINE_*, which would be this one).
    caller = sys._getframe(1).f_globals.get('__name__', '')  # pylint: disable=protected-access
    module_name = sys.argv[0] if caller == '__main__' else caller
    return flags.DEFINE_string('asset', None, help_text, required=required,
                               flag_values=flag_values, module_name=module_name)
