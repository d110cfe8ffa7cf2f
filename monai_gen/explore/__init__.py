"""``monai-gen explore``: a local web page over a bundle, one control per condition, a live sample redrawn on change.

- :mod:`~monai_gen.explore.controls`: the controls read from the bundle's conditions, and the check of a page request;
- :mod:`~monai_gen.explore.session`: one bundle's generator loaded once; samples, cines, sweeps, exports, each
  sampler step reported;
- :mod:`~monai_gen.explore.views`: drawing and measuring a modality's samples (ECG on paper, images in a window, a cine
  as a looping GIF, a CT in three planes at HU windows);
- :mod:`~monai_gen.explore.reference`: the nearest real training sample (the memorisation check made visible);
- :mod:`~monai_gen.explore.jobs`: one generation at a time, newer requests replacing waiting ones, the running one's
  step and a waiting one's place;
- :mod:`~monai_gen.explore.server`: the standard-library HTTP server (loopback only) and its page.

Nothing here is imported by the rest of the package; torch and MONAI load only when a session starts.
"""

from __future__ import annotations

__all__: list[str] = []
