"""Vectorised renderer of DEPArray-like single-cell crops.

All pixel work runs on batches ``[n, P, P]`` in float32, where ``P = size + 2 * PAD`` is a padded canvas
so that FFT-based filtering (periodic) never wraps one crop edge onto the other. Python loops run only
over lobes, nucleoli and debris specks (a handful), never over cells or pixels.

Physics, briefly:

* Each cell is a sphere in suspension: its thickness is ``2 * sqrt(R(theta)**2 - r**2)``, with an outline
  ``R(theta) = R0 * (1 + sum_k a_k cos(k theta + phi_k))`` (random polar harmonics, k = 2..5).
* Bright-field is a weak phase object imaged slightly out of focus. By the transport-of-intensity equation
  (Teague 1983), ``dI/dz = -(lambda / 2 pi) div(I grad phi)``; with ``phi = 2 pi OPD / lambda`` and a uniform
  illumination ``I0`` this gives ``I(z) = I0 * (1 - z * laplacian(OPD) - mu * t)`` where OPD is the optical
  path difference (refractive-index increment times thickness), ``z`` the signed defocus and ``mu * t`` a
  weak Beer-Lambert absorption. The sign of ``z`` decides whether the rim is dark or a bright halo.
* Fluorescence is the stain density projected along the optical axis, blurred by a Gaussian PSF whose
  width grows with defocus.
* The camera adds shot noise (Poisson in photo-electrons, with a gain in counts per electron; drawn exactly
  below 64 electrons and by its normal approximation above) and Gaussian read noise, then clips to uint16.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import scipy.fft as sfft

__all__ = ["CHANNELS", "PAD", "expose", "render_signals"]

CHANNELS = ("BF", "DAPI", "CK", "CD45")

#: Refractive-index increments over the medium (dimensionless) of cytoplasm and the extra of nucleus.
_DN_CYTO = 0.022
_DN_NUCLEUS = 0.007
#: OPD amplitude (um per um of cytoplasm thickness) of cytoplasmic granules at granularity 1, and of a nucleolus.
_GRANULE_OPD = 0.0006
_NUCLEOLUS_OPD = 0.012
#: Width (um) of the CD45 membrane ring.
_MEMBRANE_UM = 0.45
#: Padding (px) of the canvas around the crop, so that periodic FFT filtering never wraps.
PAD = 8
#: Absorption coefficients (1/um) of cytoplasm and nucleus in bright-field.
_MU_CYTO = 0.0012
_MU_NUCLEUS = 0.0025
#: Diffraction-limited PSF sigma (um) and extra blur per um of defocus.
_PSF_SIGMA_UM = 0.3
_DEFOCUS_BLUR = 0.12
#: Maximum number of nucleus lobes / fragments, nucleoli and debris specks per crop.
_MAX_LOBES = 6
_MAX_NUCLEOLI = 4
_MAX_DEBRIS = 3
#: Shot noise is drawn exactly below this many photo-electrons.
_POISSON_EXACT_BELOW = 64.0
#: Variance of a uniform random signed byte shifted by 0.5 (the white spectrum of textures).
_WHITE_VAR = (256.0**2 - 1.0) / 12.0


def _col(frame: pd.DataFrame, name: str) -> np.ndarray:
    return frame[name].to_numpy(dtype=np.float32)


def _b(values: np.ndarray) -> np.ndarray:
    """Broadcast a per-cell vector over the two image axes."""
    return np.asarray(values, dtype=np.float32)[:, None, None]


class _Spectrum:
    """Frequency grid of the padded canvas (radians per pixel)."""

    def __init__(self, p: int):
        ky = 2 * np.pi * np.fft.fftfreq(p)
        kx = 2 * np.pi * np.fft.rfftfreq(p)
        self.p = p
        self.k2 = (ky[:, None] ** 2 + kx[None, :] ** 2).astype(np.float32)
        weight = np.full(kx.size, 2.0, dtype=np.float32)
        weight[0] = 1.0
        if p % 2 == 0:
            weight[-1] = 1.0
        self.weight = weight
        self._cache: dict[float, np.ndarray] = {}

    def gaussian(self, sigma_px: np.ndarray) -> np.ndarray:
        """Transfer function of a Gaussian blur, one per cell: ``[n, P, P//2+1]``."""
        return np.exp(self.k2 * (-0.5 * _b(sigma_px) ** 2))

    def _filter(self, scale_px: np.ndarray) -> np.ndarray:
        """Band-pass ``(k s)^2 exp(-(k s)^2 / 2)`` per cell, scaled so the output field has unit variance."""
        ks = self.k2 * (scale_px.astype(np.float32) ** 2)[:, None, None]
        filt = ks * np.exp(-0.5 * ks)
        power = np.einsum("nyx,x->n", filt * filt, self.weight) * (2.0 * _WHITE_VAR / float(self.p) ** 4)
        filt *= (1.0 / np.sqrt(np.maximum(power, 1e-30))).astype(np.float32)[:, None, None]
        return filt

    def noise(self, rng: np.random.Generator, scale_px: np.ndarray | float, n: int) -> np.ndarray:
        """Band-pass random field with unit variance and grain size about ``scale_px``: ``[n, P, P]``.

        White noise is shaped in the frequency domain by ``(k s)^2 exp(-(k s)^2 / 2)``, which peaks at a
        wavelength of about ``4.4 s``, and brought back by one inverse FFT. The real and imaginary parts of
        the white spectrum are uniform random bytes: cheap to draw, and every pixel of the field is a sum over
        thousands of them, so the field is Gaussian to a very good approximation.
        """
        scale = np.asarray(scale_px, dtype=np.float32)
        if scale.ndim == 0:
            key = float(scale)
            if key not in self._cache:
                self._cache[key] = self._filter(scale[None])
            filt = self._cache[key]
        else:
            filt = self._filter(scale)
        ph = self.k2.shape[1]
        white = np.frombuffer(rng.bytes(n * self.p * ph * 2), dtype=np.int8).astype(np.float32)
        white += 0.5
        spec = white.view(np.complex64).reshape(n, self.p, ph)
        spec *= filt
        return sfft.irfft2(spec, s=(self.p, self.p), workers=1)


def _harmonic(z: np.ndarray, coef: np.ndarray) -> np.ndarray:
    """``Re(sum_k c_k z^k)`` for k = 2..5 by Horner's rule; ``z = exp(i theta)``, coef ``[n, 4]`` complex."""
    c = coef.astype(np.complex64)[:, :, None, None]
    acc = c[:, 3] * z
    acc += c[:, 2]
    acc *= z
    acc += c[:, 1]
    acc *= z
    acc += c[:, 0]
    acc *= z
    acc *= z
    return acc.real


def _harmonic_coefficients(rng: np.random.Generator, amplitude: np.ndarray) -> np.ndarray:
    """Random complex coefficients of orders 2..5, decaying with order, scaled by ``amplitude``."""
    n = amplitude.size
    decay = np.array([1.0, 0.7, 0.5, 0.35])
    mag = np.abs(rng.normal(1.0, 0.35, (n, 4))) * decay * amplitude[:, None]
    phase = rng.uniform(0, 2 * np.pi, (n, 4))
    return mag * np.exp(1j * phase)


def _dome(d2: np.ndarray, radius_px: np.ndarray) -> np.ndarray:
    """Normalised thickness ``sqrt(1 - d^2 / R^2)`` of a sphere of radius R (0 outside)."""
    return np.sqrt(np.maximum(1.0 - d2 / radius_px**2, 0.0))


def _blobs(dx: np.ndarray, dy: np.ndarray, cx: np.ndarray, cy: np.ndarray, sigma: np.ndarray) -> np.ndarray:
    """Gaussian blobs ``exp(-d^2 / 2 sigma^2)`` centred at (cx, cy) relative to the grid origin."""
    d2 = (dx - _b(cx)) ** 2 + (dy - _b(cy)) ** 2
    return np.exp(d2 * _b(-0.5 / sigma**2))


@dataclass
class _Canvas:
    """The padded pixel grid of one batch, centred on each cell: offsets ``dx``, ``dy`` and distance ``r``."""

    size: int
    p: int
    px: np.float32
    radius: np.ndarray  # [n], cell radius in px
    centre: float
    cx: np.ndarray  # [n], cell centre in canvas px
    cy: np.ndarray
    dx: np.ndarray  # [n, 1, P]
    dy: np.ndarray  # [n, P, 1]
    r: np.ndarray  # [n, P, P]


@dataclass
class _Nucleus:
    """The nucleus of each cell: normalised dome (0..1), thickness (um), lobe 0's centre and radius (px)."""

    dome: np.ndarray
    t: np.ndarray
    x0: np.ndarray
    y0: np.ndarray
    lobe_r0: np.ndarray
    inside: np.ndarray | None = None


def _canvas(cells: pd.DataFrame, size: int, px: np.float32) -> _Canvas:
    """Cell radii and centres, and each pixel's offset from its cell's centre."""
    p = size + 2 * PAD
    radius = _col(cells, "cell_diameter_um") / (2 * px)
    centre = (p - 1) / 2.0
    cx = centre + _col(cells, "offset_x_px")
    cy = centre + _col(cells, "offset_y_px")
    grid = np.arange(p, dtype=np.float32)
    dx = grid[None, None, :] - _b(cx)  # [n, 1, P]
    dy = grid[None, :, None] - _b(cy)  # [n, P, 1]
    r = np.sqrt(dx * dx + dy * dy) + np.float32(1e-3)  # [n, P, P]
    return _Canvas(size, p, px, radius, centre, cx, cy, dx, dy, r)


def _outline(z: np.ndarray, coef: np.ndarray, radius_px: np.ndarray) -> np.ndarray:
    """Outline radius ``R(theta) = R0 * (1 + sum_k a_k cos(k theta + phi_k))`` (px) at every pixel."""
    outline = _harmonic(z, coef)
    outline += 1.0
    outline *= _b(radius_px)
    return outline


def _nucleus(
    rng: np.random.Generator,
    cells: pd.DataFrame,
    c: _Canvas,
    outline: np.ndarray,
    nuc_radius: np.ndarray,
    cell_t: np.ndarray,
) -> _Nucleus:
    """The nucleus: lobe 0 (irregular, off-centre), more lobes or fragments, a kidney indentation; kept inside
    the cell."""
    offset_angle = rng.uniform(0, 2 * np.pi, len(cells))
    offset = _col(cells, "nucleus_offset") * c.radius
    x0 = (offset * np.cos(offset_angle)).astype(np.float32)
    y0 = (offset * np.sin(offset_angle)).astype(np.float32)
    d2 = (c.dx - _b(x0)) ** 2 + (c.dy - _b(y0)) ** 2
    dome = np.sqrt(np.maximum(1.0 - d2 / outline**2, 0.0))  # normalised, 0..1
    del d2
    nuc = _Nucleus(dome, dome * _b(2 * nuc_radius * c.px), x0, y0, nuc_radius.copy())
    _add_lobes(rng, cells, c, nuc_radius, nuc)
    _indent(rng, cells, c, nuc_radius, offset_angle, nuc)
    np.minimum(nuc.t, cell_t * np.float32(0.92), out=nuc.t)
    nuc.inside = nuc.t > 0.05
    nuc.dome *= nuc.inside
    return nuc


def _add_lobes(
    rng: np.random.Generator, cells: pd.DataFrame, c: _Canvas, nuc_radius: np.ndarray, nuc: _Nucleus
) -> None:
    """Replace the nucleus of multi-lobed cells: neutrophil lobes along an arc, apoptotic fragments scattered in
    the cell."""
    n_lobes = cells["n_lobes"].to_numpy().astype(int)
    multi = np.flatnonzero(n_lobes > 1)
    if not multi.size:
        return
    m = n_lobes[multi].astype(np.float32)
    rad = c.radius[multi]
    rho = nuc_radius[multi] / np.sqrt(m) * 1.05
    arc = np.minimum(0.46 * rad, np.maximum(rad - rho - 1.0, 0.0))
    step = 2 * np.arcsin(np.clip(1.7 * rho / (2 * np.maximum(arc, 1e-3)), 0, 1))
    start = rng.uniform(0, 2 * np.pi, multi.size)
    jitter = 1.0 + rng.normal(0, 0.12, (multi.size, _MAX_LOBES))
    lobe_size = rho[:, None] * rng.uniform(0.85, 1.15, (multi.size, _MAX_LOBES))
    scatter_r = np.sqrt(rng.uniform(0, 1, (multi.size, _MAX_LOBES))) * 0.55 * rad[:, None]
    scatter_a = rng.uniform(0, 2 * np.pi, (multi.size, _MAX_LOBES))
    j = np.arange(_MAX_LOBES)[None, :]
    ang = start[:, None] + (j - (m[:, None] - 1) / 2) * step[:, None]
    frag = (cells["subtype"].to_numpy()[multi] == "ctc_apoptotic")[:, None]
    lx = np.where(frag, scatter_r * np.cos(scatter_a), arc[:, None] * jitter * np.cos(ang))
    ly = np.where(frag, scatter_r * np.sin(scatter_a), arc[:, None] * jitter * np.sin(ang))
    lobe_size = np.where(j < n_lobes[multi, None], lobe_size, 0.0)
    nuc.lobe_r0[multi] = lobe_size[:, 0]
    sdx, sdy = c.dx[multi], c.dy[multi]
    sub_dome = np.zeros((multi.size, c.p, c.p), np.float32)
    sub_t = np.zeros((multi.size, c.p, c.p), np.float32)
    for k in range(_MAX_LOBES):
        rk = np.maximum(lobe_size[:, k], 1e-3)
        dome = _dome((sdx - _b(lx[:, k])) ** 2 + (sdy - _b(ly[:, k])) ** 2, _b(rk))
        np.maximum(sub_dome, dome, out=sub_dome)
        dome *= _b(2 * rk * c.px)
        np.maximum(sub_t, dome, out=sub_t)
    nuc.dome[multi] = sub_dome
    nuc.t[multi] = sub_t
    nuc.x0[multi], nuc.y0[multi] = lx[:, 0], ly[:, 0]


def _indent(
    rng: np.random.Generator,
    cells: pd.DataFrame,
    c: _Canvas,
    nuc_radius: np.ndarray,
    offset_angle: np.ndarray,
    nuc: _Nucleus,
) -> None:
    """Kidney shape: a disc bitten out of the nucleus on the side facing the cell centre."""
    indent = _col(cells, "indentation")
    idx = np.flatnonzero(indent > 0)
    if not idx.size:
        return
    ang = offset_angle[idx] + np.pi + rng.normal(0, 0.3, idx.size)
    dist = nuc_radius[idx] * rng.uniform(0.8, 1.0, idx.size)
    ix = nuc.x0[idx] + dist * np.cos(ang)
    iy = nuc.y0[idx] + dist * np.sin(ang)
    d = np.sqrt((c.dx[idx] - _b(ix)) ** 2 + (c.dy[idx] - _b(iy)) ** 2)
    keep = np.clip((d - _b(indent[idx] * nuc_radius[idx])) / 1.2, 0.0, 1.0)
    nuc.dome[idx] *= keep
    nuc.t[idx] *= keep


def _textures(
    rng: np.random.Generator, cells: pd.DataFrame, spectrum: _Spectrum, px: np.float32
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Chromatin clumps (lognormal, mean 1), cytoplasmic granules and large patches (unit-variance fields)."""
    n = len(cells)
    chrom = spectrum.noise(rng, _col(cells, "chromatin_scale_um") / px / 2.2, n)
    contrast = _b(_col(cells, "chromatin_contrast"))
    chrom *= contrast
    chrom -= 0.5 * contrast**2
    np.exp(chrom, out=chrom)  # lognormal clumps, mean 1
    granules = spectrum.noise(rng, np.float32(0.35) / px / 2.2, n)
    patches = spectrum.noise(rng, np.float32(3.0) / px / 2.2, n)
    return chrom, granules, patches


def _nucleoli(rng: np.random.Generator, cells: pd.DataFrame, c: _Canvas, nuc: _Nucleus) -> np.ndarray:
    """Nucleoli: Gaussian blobs in lobe 0 of the nucleus, clipped to 1 and zero outside the nucleus."""
    n = len(cells)
    nucleoli = np.zeros((n, c.p, c.p), np.float32)
    n_nucleoli = cells["n_nucleoli"].to_numpy().astype(int)
    for k in range(_MAX_NUCLEOLI):
        idx = np.flatnonzero(n_nucleoli > k)
        if idx.size == 0:
            continue
        rr = np.sqrt(rng.uniform(0, 1, idx.size)) * 0.5 * nuc.lobe_r0[idx]
        aa = rng.uniform(0, 2 * np.pi, idx.size)
        sig = rng.uniform(0.35, 0.6, idx.size) / c.px
        cx, cy = nuc.x0[idx] + rr * np.cos(aa), nuc.y0[idx] + rr * np.sin(aa)
        nucleoli[idx] += _blobs(c.dx[idx], c.dy[idx], cx, cy, sig)
    np.minimum(nucleoli, 1.0, out=nucleoli)
    nucleoli *= nuc.inside
    return nucleoli


def _optical_path(
    rng: np.random.Generator,
    cells: pd.DataFrame,
    cell_t: np.ndarray,
    cyto_t: np.ndarray,
    nuc: _Nucleus,
    chrom: np.ndarray,
    granules: np.ndarray,
    nucleoli: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Optical path difference (um) and absorption of each cell, for bright field."""
    opd = cell_t * _b(_DN_CYTO * rng.normal(1.0, 0.08, len(cells)))
    opd += nuc.t * (np.float32(_DN_NUCLEUS) * (0.9 + 0.1 * chrom))
    opd += granules * cyto_t * (np.float32(_GRANULE_OPD) * _b(_col(cells, "granularity")))
    opd += nucleoli * np.float32(_NUCLEOLUS_OPD)
    absorb = cell_t * np.float32(_MU_CYTO) + nuc.t * np.float32(_MU_NUCLEUS)
    return opd, absorb


def _dapi(
    out: np.ndarray, cells: pd.DataFrame, pat: pd.DataFrame, nuc: _Nucleus, chrom: np.ndarray, nucleoli: np.ndarray
) -> None:
    """DAPI density into ``out [n, P, P]``: chromatin over the nucleus dome, thinner in nucleoli."""
    np.multiply(nuc.dome, chrom, out=out)
    out *= 1.0 - 0.6 * nucleoli
    out *= _b(_col(cells, "dapi_level") * _col(pat, "dapi_peak"))


def _ck(
    out: np.ndarray,
    rng: np.random.Generator,
    cells: pd.DataFrame,
    pat: pd.DataFrame,
    spectrum: _Spectrum,
    c: _Canvas,
    cyto_t: np.ndarray,
    patches: np.ndarray,
) -> None:
    """CK density into ``out [n, P, P]``: cytoplasm thickness, a filament network where ``ck_fibres`` > 0."""
    np.multiply(cyto_t, _b(1.0 / (2 * c.radius * c.px)), out=out)
    fibre_w = _col(cells, "ck_fibres")
    idx = np.flatnonzero(fibre_w > 0)
    if idx.size:
        fib = spectrum.noise(rng, np.float32(2.0) / c.px / 2.2, idx.size)
        fib = np.exp(-((fib / 0.5) ** 2))  # thin ridges along the zero lines: a filament network
        w = _b(fibre_w[idx])
        out[idx] *= (1.0 - w) + w * (0.45 + 1.4 * fib)
    out *= 1.0 + 0.25 * patches
    out *= _b(_col(cells, "ck_level") * _col(pat, "ck_peak"))


def _cd45(
    out: np.ndarray,
    cells: pd.DataFrame,
    pat: pd.DataFrame,
    c: _Canvas,
    outline: np.ndarray,
    cell_in: np.ndarray,
    patches: np.ndarray,
) -> None:
    """CD45 density into ``out [n, P, P]``: a membrane ring on the outline over a weak fill of the cell."""
    ring = (c.r - outline) / (np.float32(_MEMBRANE_UM) / c.px)
    np.exp(-0.5 * ring * ring, out=out)
    out += 0.22 * cell_in
    out *= 1.0 + 0.35 * patches
    out *= _b(_col(cells, "cd45_level") * _col(pat, "cd45_peak"))


def _add_neighbours(
    rng: np.random.Generator,
    cells: pd.DataFrame,
    pat: pd.DataFrame,
    c: _Canvas,
    chrom: np.ndarray,
    granules: np.ndarray,
    opd: np.ndarray,
    absorb: np.ndarray,
    fluo: np.ndarray,
) -> None:
    """Add a neighbour cell (a leukocyte or a CTC) cut by the crop edge where ``neighbour`` says so."""
    neighbour = cells["neighbour"].to_numpy()
    idx = np.flatnonzero(neighbour != "none")
    if not idx.size:
        return
    px, centre, width = c.px, c.centre, np.float32(_MEMBRANE_UM) / c.px
    dapi, ck, cd45 = fluo[:, 0], fluo[:, 1], fluo[:, 2]
    m = idx.size
    is_ctc = neighbour[idx] == "ctc"
    nr = np.where(is_ctc, rng.uniform(12, 20, m), rng.uniform(8, 14, m)) / px / 2
    ang = rng.uniform(0, 2 * np.pi, m)
    edge = (c.size / 2) / np.maximum(np.abs(np.cos(ang)), np.abs(np.sin(ang)))
    dist = edge + nr * rng.uniform(-0.5, 0.7, m)
    dist = np.maximum(dist, c.radius[idx] * 1.1 + nr + 2.0 + np.hypot(c.cx[idx] - centre, c.cy[idx] - centre))
    ddx = c.dx[idx] + _b(c.cx[idx] - centre - dist * np.cos(ang))
    ddy = c.dy[idx] + _b(c.cy[idx] - centre - dist * np.sin(ang))
    d2 = ddx * ddx + ddy * ddy
    dome = _dome(d2, _b(nr))
    na = rng.uniform(0, 2 * np.pi, m)
    nn_r = nr * np.where(is_ctc, 0.7, rng.uniform(0.55, 0.78, m))
    off = nr * rng.uniform(0, 0.15, m)
    ndome = _dome((ddx - _b(off * np.cos(na))) ** 2 + (ddy - _b(off * np.sin(na))) ** 2, _b(nn_r))
    np.minimum(ndome, dome, out=ndome)
    t = dome * _b(2 * nr * px)
    tn = ndome * _b(2 * nn_r * px)
    opd[idx] += t * np.float32(_DN_CYTO) + tn * np.float32(_DN_NUCLEUS)
    opd[idx] += granules[idx] * (t - tn) * np.float32(_GRANULE_OPD * 0.7)
    absorb[idx] += t * np.float32(_MU_CYTO) + tn * np.float32(_MU_NUCLEUS)
    sub = pat.iloc[idx]
    dapi[idx] += ndome * chrom[idx] * _b(_col(sub, "dapi_peak") * rng.lognormal(0, 0.15, m))
    level = np.where(is_ctc, rng.lognormal(0, 0.5, m), 0.01)
    ck[idx] += np.maximum(dome - ndome, 0) * _b(level * _col(sub, "ck_peak"))
    nring = (np.sqrt(d2) - _b(nr)) / width
    nring = np.exp(-0.5 * nring * nring) + 0.22 * (dome > 0)
    level = np.where(is_ctc, 0.0, rng.lognormal(np.log(0.8), 0.25, m))
    cd45[idx] += nring * _b(level * _col(sub, "cd45_peak"))


def _add_debris(
    rng: np.random.Generator,
    cells: pd.DataFrame,
    pat: pd.DataFrame,
    c: _Canvas,
    opd: np.ndarray,
    absorb: np.ndarray,
    fluo: np.ndarray,
) -> None:
    """Add ``n_debris`` specks anywhere in the crop: phase and absorption, a third fluorescent per channel."""
    n_debris = cells["n_debris"].to_numpy().astype(int)
    for k in range(_MAX_DEBRIS):
        idx = np.flatnonzero(n_debris > k)
        if idx.size == 0:
            continue
        m = idx.size
        bx = PAD + rng.uniform(0, c.size, m) - c.cx[idx]
        by = PAD + rng.uniform(0, c.size, m) - c.cy[idx]
        blob = _blobs(c.dx[idx], c.dy[idx], bx, by, rng.uniform(0.3, 1.0, m) / c.px)
        opd[idx] += blob * _b(rng.uniform(0.005, 0.03, m))
        absorb[idx] += blob * _b(rng.uniform(0.02, 0.15, m))
        sub = pat.iloc[idx]
        for ch, name in enumerate(("dapi_peak", "ck_peak", "cd45_peak")):
            lit = rng.uniform(0, 1, m) < 0.35
            level = np.where(lit, rng.lognormal(np.log(0.15), 0.7, m), 0.0)
            fluo[idx, ch] += blob * _b(level * _col(sub, name))


def _optics(
    cells: pd.DataFrame, spectrum: _Spectrum, c: _Canvas, opd: np.ndarray, absorb: np.ndarray, fluo: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """TIE bright field (relative change) and PSF-blurred fluorescence, cropped to ``size``."""
    p, size = c.p, c.size
    gauss = spectrum.gaussian(_col(cells, "blur_sigma_um") / c.px)
    crop = (slice(None), slice(PAD, PAD + size), slice(PAD, PAD + size))
    f_opd = sfft.rfft2(opd, workers=1)
    f_opd *= spectrum.k2 * (_b(_col(cells, "bf_defocus_um")) / c.px**2)  # -z laplacian(OPD) <-> +z k^2 OPD^
    f_opd *= gauss
    bf_rel = sfft.irfft2(f_opd, s=(p, p), workers=1)[crop]
    bf_rel -= absorb[crop]
    del f_opd
    f_fluo = sfft.rfft2(fluo, workers=1)
    f_fluo *= gauss[:, None]
    fluo = sfft.irfft2(f_fluo, s=(p, p), workers=1)[:, :, PAD : PAD + size, PAD : PAD + size]
    return bf_rel, fluo


def render_signals(
    cells: pd.DataFrame,
    patients: pd.DataFrame,
    *,
    size: int,
    pixel_size_um: float,
    rng: np.random.Generator,
    spectrum: _Spectrum | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The noise-free optical signals of one batch of cells, before illumination and the camera.

    Returns ``bf_rel`` float32 ``[n, size, size]`` (relative bright-field change, ``I / I0 - 1``), ``fluo``
    float32 ``[n, 3, size, size]`` (DAPI, CK and CD45 in counts above the background) and the masks, uint8
    ``[n, size, size]``. Both signals are linear in the cell's content, so cells rendered apart can be added
    into one larger field of view (see :mod:`ctcid.synth.frames`).

    The steps draw from ``rng`` in a fixed order (outline harmonics, nucleus, textures, nucleoli, optical path,
    CK filaments, neighbours, debris), so the same generator state gives the same pixels.
    """
    n = len(cells)
    px = np.float32(pixel_size_um)
    c = _canvas(cells, size, px)
    if spectrum is None or spectrum.p != c.p:
        spectrum = _Spectrum(c.p)
    pat = patients.set_index("sample_id").loc[cells["sample_id"].to_numpy()]

    # shape: outlines from polar harmonics, thickness of a sphere (um), the nucleus inside
    z = (c.dx + 1j * c.dy).astype(np.complex64)
    z /= c.r  # exp(i theta)
    cell_coef = _harmonic_coefficients(rng, _col(cells, "irregularity").astype(np.float64))
    nuc_coef = _harmonic_coefficients(rng, _col(cells, "nucleus_irregularity").astype(np.float64))
    nuc_radius = _col(cells, "nucleus_diameter_um") / (2 * px)
    outline = _outline(z, cell_coef, c.radius)
    nuc_outline = _outline(z, nuc_coef, nuc_radius)
    del z
    cell_in = c.r < outline
    cell_t = np.sqrt(np.maximum(1.0 - (c.r / outline) ** 2, 0.0))
    cell_t *= _b(2 * c.radius * px)
    nuc = _nucleus(rng, cells, c, nuc_outline, nuc_radius, cell_t)
    del nuc_outline

    # content: textures, nucleoli, optical path and stain densities
    chrom, granules, patches = _textures(rng, cells, spectrum, px)
    nucleoli = _nucleoli(rng, cells, c, nuc)
    cyto_t = np.maximum(cell_t - nuc.t, 0.0)
    opd, absorb = _optical_path(rng, cells, cell_t, cyto_t, nuc, chrom, granules, nucleoli)
    fluo = np.empty((n, 3, c.p, c.p), np.float32)
    _dapi(fluo[:, 0], cells, pat, nuc, chrom, nucleoli)
    _ck(fluo[:, 1], rng, cells, pat, spectrum, c, cyto_t, patches)
    _cd45(fluo[:, 2], cells, pat, c, outline, cell_in, patches)
    del patches, cyto_t, nucleoli, outline

    # what else the crop holds, then the optics
    _add_neighbours(rng, cells, pat, c, chrom, granules, opd, absorb, fluo)
    del granules, chrom, cell_t
    _add_debris(rng, cells, pat, c, opd, absorb, fluo)
    bf_rel, fluo = _optics(cells, spectrum, c, opd, absorb, fluo)
    return bf_rel, fluo, _masks(cell_in, nuc.inside)


def expose(
    cells: pd.DataFrame, patients: pd.DataFrame, bf_rel: np.ndarray, fluo: np.ndarray, rng: np.random.Generator
) -> np.ndarray:
    """The camera images uint16 ``[n, 4, size, size]`` of the signals of :func:`render_signals` for ``cells``:
    illumination, background, offset, shot and read noise (see :func:`ctcid.synth.render_cells`)."""
    n, size = len(cells), bf_rel.shape[-1]
    pat = patients.set_index("sample_id").loc[cells["sample_id"].to_numpy()]

    # ---- illumination, background, camera --------------------------------------------------------
    xs = np.linspace(-1, 1, size, dtype=np.float32)
    illum = (
        1.0 + _b(_col(cells, "illum_grad_x")) * xs[None, None, :] + _b(_col(cells, "illum_grad_y")) * xs[:, None]
    )
    bf_level = _col(pat, "bf_intensity")
    images = np.empty((n, 4, size, size), np.float32)
    np.multiply(illum, _b(_col(cells, "illum_gain") * bf_level), out=images[:, 0])
    images[:, 0] *= 1.0 + bf_rel
    background = np.stack([_col(pat, c) for c in ("dapi_background", "ck_background", "cd45_background")], 1)
    illum -= 1.0
    illum *= 0.3
    illum += 1.0  # fluorescence background follows the illumination gradient weakly
    np.multiply(illum[:, None], background[:, :, None, None], out=images[:, 1:])
    images[:, 1:] += fluo
    images += _col(pat, "camera_offset")[:, None, None, None]
    np.maximum(images, 0.0, out=images)
    del fluo, illum, bf_rel
    return _camera(rng, images, _col(pat, "camera_gain"), _col(pat, "read_noise"))


def _camera(rng: np.random.Generator, signal: np.ndarray, gain: np.ndarray, read_noise: np.ndarray) -> np.ndarray:
    """Shot noise (Poisson in photo-electrons, ``gain`` counts per electron) plus Gaussian read noise, uint16.

    Above :data:`_POISSON_EXACT_BELOW` electrons both are drawn together as one normal variable of variance
    ``gain * signal + read_noise**2`` (the normal approximation of the Poisson law); below, exactly.
    """
    g = gain[:, None, None, None]
    rn = read_noise[:, None, None, None]
    sd = signal * g
    sd += rn * rn
    np.sqrt(sd, out=sd)
    noisy = rng.standard_normal(signal.shape, dtype=np.float32)
    noisy *= sd
    noisy += signal
    low = signal < _POISSON_EXACT_BELOW * g
    if low.any():
        where = np.nonzero(low)
        electrons = signal[where] / g[where[0], 0, 0, 0]
        exact = rng.poisson(electrons).astype(np.float32) * g[where[0], 0, 0, 0]
        noisy[where] = exact + rng.standard_normal(exact.size, dtype=np.float32) * rn[where[0], 0, 0, 0]
    np.rint(noisy, out=noisy)
    np.clip(noisy, 0, 65535, out=noisy)
    return noisy.astype(np.uint16)


def _masks(cell_in: np.ndarray, nuc_in: np.ndarray) -> np.ndarray:
    inner = (slice(None), slice(PAD, -PAD), slice(PAD, -PAD))
    mask = cell_in[inner].astype(np.uint8)
    mask[nuc_in[inner]] = 2
    return mask
