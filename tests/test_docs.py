"""The documentation stays a reference a newcomer can follow (BUILD_NOTES.md "Tests, CI and make
targets").

Checks, without importing TensorFlow or mofl:
- BUILD_NOTES.md holds build facts only: at most `MAX_BUILD_NOTES_LINES` lines;
- docs/deviations.md names every `configs/*.flags` file;
- every documentation reference in the code, configs and docs points to something that exists:
  a `docs/PAGE.md`, `BUILD_NOTES.md` or `CHANGELOG.md` path names an existing file, and a quoted
  section after it (`BUILD_NOTES.md "Heading"`, `docs/PAGE.md "Heading"`, optionally followed by
  `→ "Subheading"`) names an existing heading of that file, word for word. A quoted name in
  angle brackets (`"<heading>"`) is a placeholder in a how-to and is not checked.

A reference may wrap across lines of a docstring or comment: the text is read with each line
break and the indentation and comment marks after it folded into one space.
"""
import glob
import os
import re

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MAX_BUILD_NOTES_LINES = 400

# Files whose references are checked.
SCANNED_GLOBS = ('mofl/**/*.py', 'mofl/**/*.cc', 'mofl/**/*.h', 'tools/*.py', 'tools/*.sh',
                 'tools/*.cc', 'tests/*.py', 'configs/*.flags', 'docs/*.md', '*.md', 'Makefile',
                 'setup.py', 'requirements*.txt', '.ci/run')

# A documentation file, then optionally a quoted heading (and a quoted sub-heading after →).
_FILE = r'(?P<file>(?:docs/[A-Za-z0-9_]+\.md)|BUILD_NOTES(?:\.md)?|CHANGELOG\.md)'
_QUOTE = r'"(?P<{name}>[^"\n]{{1,120}})"'
REFERENCE = re.compile(_FILE + r'(?:,? +(?:→ +)?' + _QUOTE.format(name='heading')
                       + r'(?: +→ +' + _QUOTE.format(name='sub') + r')?)?')
HEADING = re.compile(r'^#{1,6} +(.+?) *#*$', re.MULTILINE)
# A line break with the next line's indentation and comment or docstring marks.
# A closing string quote before the break and an opening one after it are folded too, so that
# a reference split over two Python string literals reads as one.
LINE_BREAK = re.compile(r"[ \t]*'?[ \t]*\n[ \t]*(?:(?://|#)+[ \t]*)?(?:'[ \t]*)?")
# This file's own examples are not references.
NOT_SCANNED = ('tests/test_docs.py',)


def _read(relative):
    with open(os.path.join(ROOT, relative), encoding='utf-8') as f:
        return f.read()


def _scanned_files():
    files = set()
    for pattern in SCANNED_GLOBS:
        for path in glob.glob(os.path.join(ROOT, pattern), recursive=True):
            if os.path.isfile(path):
                files.add(os.path.relpath(path, ROOT))
    return sorted(files - set(NOT_SCANNED))


def _folded(text):
    """Text with line breaks (and the indentation, `#`, `//` marks after them) as one space."""
    return LINE_BREAK.sub(' ', text)


def _headings(relative):
    text = _read(relative)
    # Headings inside fenced code blocks are not headings.
    text = re.sub(r'^```.*?^```', '', text, flags=re.MULTILINE | re.DOTALL)
    return {match.group(1).strip() for match in HEADING.finditer(text)}


def _resolve(name):
    return 'BUILD_NOTES.md' if name == 'BUILD_NOTES' else name


def find_references(text):
    """(file, heading or None, sub-heading or None) of every documentation reference."""
    refs = []
    for match in REFERENCE.finditer(_folded(text)):
        refs.append((_resolve(match.group('file')), match.group('heading'), match.group('sub')))
    return refs


def test_build_notes_is_short():
    lines = _read('BUILD_NOTES.md').count('\n')
    assert lines <= MAX_BUILD_NOTES_LINES, (
        f'BUILD_NOTES.md has {lines} lines (at most {MAX_BUILD_NOTES_LINES}): reference material '
        'belongs in a docs/ page, measurements in docs/experiments.md')


def test_every_config_is_in_the_deviations_table():
    deviations = _read('docs/deviations.md')
    configs = sorted(os.path.basename(p) for p in glob.glob(os.path.join(ROOT, 'configs',
                                                                           '*.flags')))
    assert configs, 'no configs/*.flags found'
    missing = [name for name in configs if f'configs/{name}' not in deviations]
    assert not missing, f'docs/deviations.md does not name {missing}'


def test_references_point_to_existing_files_and_headings():
    problems = []
    headings = {}
    checked = 0
    for relative in _scanned_files():
        for target, heading, sub in find_references(_read(relative)):
            checked += 1
            if not os.path.isfile(os.path.join(ROOT, target)):
                problems.append(f'{relative}: {target} does not exist')
                continue
            if target not in headings:
                headings[target] = _headings(target)
            for name in (heading, sub):
                if name is None or name.startswith('<'):   # a placeholder: "<heading>"
                    continue
                if name not in headings[target]:
                    problems.append(f'{relative}: {target} has no heading "{name}"')
    assert checked > 50, f'only {checked} references found: is the pattern still right?'
    assert not problems, 'broken documentation references:\n' + '\n'.join(sorted(set(problems)))


@pytest.mark.parametrize('text, expected', [
    ('see BUILD_NOTES.md "Pins and installation".', [('BUILD_NOTES.md', 'Pins and installation',
                                                      None)]),
    ('(BUILD_NOTES "Rasterizer op")', [('BUILD_NOTES.md', 'Rasterizer op', None)]),
    ('docs/training.md → "Resume" → "More"', [('docs/training.md', 'Resume', 'More')]),
    ('# in docs/experiments.md "Weight\n# averaging (thirteenth session)".',
     [('docs/experiments.md', 'Weight averaging (thirteenth session)', None)]),
    ("'(docs/data.md '\n                   '\"Dense 2D points\").')",
     [('docs/data.md', 'Dense 2D points', None)]),
    ('docs/cpu_scale.md has it', [('docs/cpu_scale.md', None, None)]),
])
def test_reference_pattern(text, expected):
    assert find_references(text) == expected


def test_a_broken_reference_is_reported(tmp_path):
    """The checker itself: a heading that does not exist is found by name."""
    refs = find_references('see docs/training.md "No such heading" and BUILD_NOTES.md.')
    assert refs == [('docs/training.md', 'No such heading', None), ('BUILD_NOTES.md', None, None)]
    assert 'No such heading' not in _headings('docs/training.md')
