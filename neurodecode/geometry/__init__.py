"""Geometry stage: pure, batched functions on signals and SPD matrices.

torch inside (CPU or GPU), numpy in and numpy out for scikit-learn users; no estimators here.
Every function broadcasts over leading axes.
"""

from .alignment import (align_signals, dispersion, geodesic, procrustes_loss, procrustes_rotation, recenter,
                        signal_reference, stretch, whitener)
from .covariance import (ESTIMATORS, covariance_from_sums, covariances, ledoit_wolf_shrinkage,
                         ledoit_wolf_shrinkage_from_moments, oas_shrinkage, shrink)
from .riemann import (distance_riemann, exp_map, log_map, mean_logeuclid, mean_riemann, tangent_space, unupper,
                      untangent_space, upper)
from .spd import (apply_eigenvalue_function, check_positive, check_spd, check_symmetric, eigh, expm, invsqrtm,
                  logm, powm, sqrtm)

__all__ = [
    "align_signals", "dispersion", "geodesic", "procrustes_loss", "procrustes_rotation", "recenter",
    "signal_reference", "stretch", "whitener",
    "ESTIMATORS", "covariance_from_sums", "covariances", "ledoit_wolf_shrinkage", "ledoit_wolf_shrinkage_from_moments",
    "oas_shrinkage", "shrink",
    "distance_riemann", "exp_map", "log_map", "mean_logeuclid", "mean_riemann", "tangent_space", "unupper",
    "untangent_space", "upper",
    "apply_eigenvalue_function", "check_positive", "check_spd", "check_symmetric", "eigh", "expm", "invsqrtm", "logm",
    "powm", "sqrtm",
]
