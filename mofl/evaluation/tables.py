"""Mean/SD summaries and Markdown tables in the layout of the paper's Table 1, Table 2 and the
supplement's Table 4."""
import numpy as np


def summarize(values, ddof=0):
    """Mean and standard deviation of per-mesh (or per-image) errors.

    Args:
        values: [N] errors, N ≥ 1.
        ddof: 0 for the population SD (our tables' default), 1 for the sample SD.

    Returns:
        (mean, sd) floats.
    """
    values = np.asarray(values, np.float64).ravel()
    if values.size == 0:
        raise ValueError('summarize: no values')
    if not np.all(np.isfinite(values)):
        raise ValueError('summarize: non-finite values')
    sd = float(np.std(values, ddof=ddof)) if values.size > ddof else float('nan')
    return float(np.mean(values)), sd


def _row(cells):
    return '| ' + ' | '.join(cells) + ' |'


def _table(header, rows):
    lines = [_row(header), _row(['---'] * len(header))]
    lines += [_row(r) for r in rows]
    return '\n'.join(lines) + '\n'


def table1_markdown(results, baselines=None, ours_label='Ours', unit='mm', decimals=2,
                    show_count=False, ddof=0):
    """Geometric error table in the layout of Table 1 (BU-3DFE): Train M / Test M columns.

    Columns of ours are ordered by (Test M, Train M), as in the paper: (1, 1), (2, 1), (4, 1),
    (2, 2), (4, 2); baseline columns follow in the given order with empty Train/Test cells.

    Args:
        results: {(train_m, test_m): [N] per-mesh RMSE in mm}.
        baselines: optional {name: [N] per-mesh RMSE}.
        ours_label: header of our columns.
        unit: appended to every number.
        decimals: digits after the point (2, as in the paper).
        show_count: add a row with the number of meshes per column.
        ddof: SD convention, see `summarize`.

    Returns:
        Markdown text.
    """
    baselines = baselines or {}
    keys = sorted(results, key=lambda k: (k[1], k[0]))
    columns = [(ours_label, f'M = {k[0]}', f'M = {k[1]}', results[k]) for k in keys]
    columns += [(name, '', '', values) for name, values in baselines.items()]
    stats = [summarize(c[3], ddof) for c in columns]
    fmt = (lambda v: f'{v:.{decimals}f} {unit}') if unit else (lambda v: f'{v:.{decimals}f}')
    rows = [['Train'] + [c[1] for c in columns],
            ['Test'] + [c[2] for c in columns],
            ['Mean'] + [fmt(m) for m, _ in stats],
            ['SD'] + [fmt(s) for _, s in stats]]
    if show_count:
        rows.append(['Meshes'] + [str(np.asarray(c[3]).size) for c in columns])
    return _table([''] + [c[0] for c in columns], rows)


def table2_markdown(ours, baselines=None, ours_label='Ours', unit='mm', decimals=2,
                    show_count=False, ddof=0):
    """Geometric error table in the layout of Table 2 (FaceWarehouse): one column per method.

    Args:
        ours: [N] per-mesh RMSE in mm (one column headed `ours_label`), or {column header: [N]}
            (one column each, in order: several runs of ours).
        baselines: optional {name: [N] per-mesh RMSE}, after ours.

    Returns:
        Markdown text with rows Mean / SD (and Meshes when `show_count`).
    """
    ours = dict(ours) if isinstance(ours, dict) else {ours_label: ours}
    columns = list(ours.items()) + list((baselines or {}).items())
    stats = [summarize(v, ddof) for _, v in columns]
    fmt = (lambda v: f'{v:.{decimals}f} {unit}') if unit else (lambda v: f'{v:.{decimals}f}')
    rows = [['Mean'] + [fmt(m) for m, _ in stats], ['SD'] + [fmt(s) for _, s in stats]]
    if show_count:
        rows.append(['Meshes'] + [str(np.asarray(v).size) for _, v in columns])
    return _table([''] + [name for name, _ in columns], rows)


def table4_markdown(results, baselines=None, decimals=2):
    """Photometric error table in the layout of supplement Table 4 (colour range [0, 255]).

    Args:
        results: {model size: (mean, sd)}; columns sorted by size, headed `M = size`.
        baselines: optional {column header: (mean, sd)}, appended in order.
        decimals: digits after the point.

    Returns:
        Markdown text with rows Mean / SD.
    """
    columns = [(f'M = {size}', results[size]) for size in sorted(results)]
    columns += list((baselines or {}).items())
    rows = [['Mean'] + [f'{m:.{decimals}f}' for _, (m, _) in columns],
            ['SD'] + [f'{s:.{decimals}f}' for _, (_, s) in columns]]
    return _table(['Size'] + [name for name, _ in columns], rows)
