"""The FML network (paper §3.4; supplement Tables 1–3)."""
from mofl.nets.feature_extractor import FeatureExtractor
from mofl.nets.fml_network import FmlNetwork, ambient_sh
from mofl.nets.identity_network import SharedIdentityNetwork
from mofl.nets.parameter_network import ParameterEstimationNetwork

__all__ = ['FeatureExtractor', 'FmlNetwork', 'ParameterEstimationNetwork',
           'SharedIdentityNetwork', 'ambient_sh']
