"""The paper's sizes that several layers default to, defined once (FML, §4 and supplement).

Imported by the bottom layers (`mofl.facemodel`, `mofl.nets`, `mofl.render`, `mofl.data`) and by
the configs above them, so that a number of the paper lives in one place.
"""
# g and a: learned shape (graph) and albedo modes (§4; supplement Tables 2 and 4).
MODEL_SIZE = 500
# Side in pixels of the square input frames (supplement Table 1; §4 crops to 240×240).
IMAGE_SIZE = 240
