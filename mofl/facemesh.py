"""mediapipe FaceMesh on single images: the face detector and landmark model shared by the face
assets (`mofl.facemodel.sources.mediapipe_source` fits its template to one photo) and the data
(`mofl.data.face_tracking`: preprocessing, reconstruction, evaluation crops).

The tracker runs mediapipe 0.10.21's legacy FaceMesh graph with the models bundled in the pip
package (no download). It is run in static-image mode: the short-range face detector runs on
every frame, which gives a per-frame detection score (tracking mode only detects when the track is
lost) and keeps one bad frame from dragging the next ones.
"""
import dataclasses
from typing import Optional

import numpy as np

from mofl import landmarks as landmark_layout
from mofl import startup

_DETECTOR_SCORE_PARAM = ('facedetectionshortrangecpu__facedetectionshortrange__facedetection__'
                         'TensorsToDetectionsCalculator.min_score_thresh')
_TRACKING_PARAM = 'facelandmarkcpu__ThresholdingCalculator.threshold'


@dataclasses.dataclass
class FaceObservation:
    """One detected face.

    Attributes:
        landmarks: [66, 2] (u, v) in image pixels (BUILD_NOTES.md "Coordinates and units").
        mesh_landmarks: [468, 3] FaceMesh points (u, v in pixels, z in the same pixel scale,
            smaller z = nearer the camera).
        score: face-detection score in [0, 1].
    """
    landmarks: np.ndarray
    mesh_landmarks: np.ndarray
    score: float


class FaceTracker:
    """mediapipe FaceMesh (legacy solution graph, bundled offline models) for one face.

    Args:
        min_detection_confidence: the face detector's score threshold.
    """

    def __init__(self, min_detection_confidence=0.5):
        # Imported here: mediapipe is heavy and only face detection needs it.
        from mediapipe.python import solution_base  # pylint: disable=g-import-not-at-top
        from mediapipe.python.solutions import face_mesh  # pylint: disable=g-import-not-at-top
        # mediapipe's C++ start-up lines (XNNPACK delegate, "feedback manager", ROI notices) are
        # dropped while the graph starts and until it has landmarked its first face (the ROI
        # notice comes only then); MOFL_TF_LOGS=1 keeps them. The graph's calculators open on
        # worker threads after SolutionBase returns, so a blank warm-up image (process() waits
        # for its outputs) keeps their lines inside the block.
        self._quiet = True
        with startup.native_stderr_dropped():
            self._graph = solution_base.SolutionBase(
                binary_graph_path=face_mesh._BINARYPB_FILE_PATH,  # pylint: disable=protected-access
                side_inputs={'num_faces': 1, 'with_attention': False,
                             'use_prev_landmarks': False},
                calculator_params={_DETECTOR_SCORE_PARAM: float(min_detection_confidence),
                                   _TRACKING_PARAM: 0.5},
                # face_detections is an output of the same graph; the stock FaceMesh drops it.
                outputs=['multi_face_landmarks', 'face_detections'])
            self._graph.process({'image': np.zeros((64, 64, 3), np.uint8)})

    def detect(self, image_rgb) -> Optional[FaceObservation]:
        """Landmarks of the most confident face in one RGB uint8 image [H, W, 3], or None."""
        height, width = image_rgb.shape[:2]
        image = {'image': np.ascontiguousarray(image_rgb)}
        if self._quiet:
            with startup.native_stderr_dropped():
                result = self._graph.process(image)
            self._quiet = not result.multi_face_landmarks
        else:
            result = self._graph.process(image)
        if not result.multi_face_landmarks:
            return None
        points = np.array([(p.x, p.y, p.z) for p in result.multi_face_landmarks[0].landmark],
                          np.float32)
        points *= np.array([width, height, width], np.float32)
        score = float(result.face_detections[0].score[0]) if result.face_detections else 0.0
        return FaceObservation(landmarks=landmark_layout.mediapipe_to_66(points[:, :2]),
                               mesh_landmarks=points, score=score)

    def close(self):
        self._graph.close()

    def __enter__(self):
        return self

    def __exit__(self, *unused):
        self.close()
