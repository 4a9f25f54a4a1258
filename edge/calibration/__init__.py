"""Calibration: bank, held-out scores, proposed thresholds and a report that explains them.

``iad-edge calibrate`` (edge/commands/calibrate.py) drives these modules:

- :mod:`edge.calibration.datasets`  good / defect image sets (real or synthetic)
- :mod:`edge.calibration.features`  feature cache so k-fold banks cost no extra expert runs
- :mod:`edge.calibration.kfold`     held-out scoring (no image scores against a bank that contains it)
- :mod:`edge.calibration.thresholds` threshold proposal for a target false-reject rate, and evaluation
- :mod:`edge.calibration.generated` the generated include file (never the technician's file)
- :mod:`edge.calibration.report`    calibration_report.md with PNG plots
"""
