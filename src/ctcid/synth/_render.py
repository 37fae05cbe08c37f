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

import numpy as np
import pandas as pd
import scipy.fft as sfft

__all__ = ["CHANNELS", "PAD", "render_batch"]

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


def render_batch(
    cells: pd.DataFrame,
    patients: pd.DataFrame,
    *,
    size: int,
    pixel_size_um: float,
    rng: np.random.Generator,
    spectrum: _Spectrum | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Render one batch of cells; see :func:`ctcid.synth.render_cells` for the contract."""
    n = len(cells)
    p = size + 2 * PAD
    if spectrum is None or spectrum.p != p:
        spectrum = _Spectrum(p)
    px = np.float32(pixel_size_um)
    pat = patients.set_index("sample_id").loc[cells["sample_id"].to_numpy()]
    subtype = cells["subtype"].to_numpy()

    # ---- cell outline and thickness (pixels; thickness in um) ---------------------------------------
    radius = _col(cells, "cell_diameter_um") / (2 * px)
    centre = (p - 1) / 2.0
    cx = centre + _col(cells, "offset_x_px")
    cy = centre + _col(cells, "offset_y_px")
    grid = np.arange(p, dtype=np.float32)
    dx = grid[None, None, :] - _b(cx)  # [n, 1, P]
    dy = grid[None, :, None] - _b(cy)  # [n, P, 1]
    r = np.sqrt(dx * dx + dy * dy) + np.float32(1e-3)  # [n, P, P]
    z = (dx + 1j * dy).astype(np.complex64)
    z /= r  # exp(i theta)

    cell_coef = _harmonic_coefficients(rng, _col(cells, "irregularity").astype(np.float64))
    nuc_coef = _harmonic_coefficients(rng, _col(cells, "nucleus_irregularity").astype(np.float64))
    outline = _harmonic(z, cell_coef)
    outline += 1.0
    outline *= _b(radius)  # R(theta), px
    cell_in = r < outline
    cell_t = np.sqrt(np.maximum(1.0 - (r / outline) ** 2, 0.0))
    cell_t *= _b(2 * radius * px)  # thickness of a sphere, um

    # ---- nucleus: lobe 0 (irregular), more lobes or fragments, kidney indentation --------------------
    nuc_radius = _col(cells, "nucleus_diameter_um") / (2 * px)
    n_lobes = cells["n_lobes"].to_numpy().astype(int)
    offset_angle = rng.uniform(0, 2 * np.pi, n)
    offset = _col(cells, "nucleus_offset") * radius
    x0 = (offset * np.cos(offset_angle)).astype(np.float32)
    y0 = (offset * np.sin(offset_angle)).astype(np.float32)
    nuc_outline = _harmonic(z, nuc_coef)
    del z
    nuc_outline += 1.0
    nuc_outline *= _b(nuc_radius)
    d2 = (dx - _b(x0)) ** 2 + (dy - _b(y0)) ** 2
    nuc_dome = np.sqrt(np.maximum(1.0 - d2 / nuc_outline**2, 0.0))  # normalised, 0..1
    del d2, nuc_outline
    nuc_t = nuc_dome * _b(2 * nuc_radius * px)
    lobe_r0 = nuc_radius.copy()

    multi = np.flatnonzero(n_lobes > 1)
    if multi.size:
        # neutrophil lobes along an arc; apoptotic fragments scattered in the cell
        m = n_lobes[multi].astype(np.float32)
        rad = radius[multi]
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
        frag = (subtype[multi] == "ctc_apoptotic")[:, None]
        lx = np.where(frag, scatter_r * np.cos(scatter_a), arc[:, None] * jitter * np.cos(ang))
        ly = np.where(frag, scatter_r * np.sin(scatter_a), arc[:, None] * jitter * np.sin(ang))
        lobe_size = np.where(j < n_lobes[multi, None], lobe_size, 0.0)
        lobe_r0[multi] = lobe_size[:, 0]
        sdx, sdy = dx[multi], dy[multi]
        sub_dome = np.zeros((multi.size, p, p), np.float32)
        sub_t = np.zeros((multi.size, p, p), np.float32)
        for k in range(_MAX_LOBES):
            rk = np.maximum(lobe_size[:, k], 1e-3)
            dome = _dome((sdx - _b(lx[:, k])) ** 2 + (sdy - _b(ly[:, k])) ** 2, _b(rk))
            np.maximum(sub_dome, dome, out=sub_dome)
            dome *= _b(2 * rk * px)
            np.maximum(sub_t, dome, out=sub_t)
        nuc_dome[multi] = sub_dome
        nuc_t[multi] = sub_t
        x0[multi], y0[multi] = lx[:, 0], ly[:, 0]
        del sub_dome, sub_t, sdx, sdy

    indent = _col(cells, "indentation")
    idx = np.flatnonzero(indent > 0)
    if idx.size:
        # kidney shape: a disc bitten out of the nucleus on the side facing the cell centre
        ang = offset_angle[idx] + np.pi + rng.normal(0, 0.3, idx.size)
        dist = nuc_radius[idx] * rng.uniform(0.8, 1.0, idx.size)
        ix = x0[idx] + dist * np.cos(ang)
        iy = y0[idx] + dist * np.sin(ang)
        d = np.sqrt((dx[idx] - _b(ix)) ** 2 + (dy[idx] - _b(iy)) ** 2)
        keep = np.clip((d - _b(indent[idx] * nuc_radius[idx])) / 1.2, 0.0, 1.0)
        nuc_dome[idx] *= keep
        nuc_t[idx] *= keep

    np.minimum(nuc_t, cell_t * np.float32(0.92), out=nuc_t)
    nuc_in = nuc_t > 0.05
    nuc_dome *= nuc_in

    # ---- textures ----------------------------------------------------------------------------------
    chrom = spectrum.noise(rng, _col(cells, "chromatin_scale_um") / px / 2.2, n)
    contrast = _b(_col(cells, "chromatin_contrast"))
    chrom *= contrast
    chrom -= 0.5 * contrast**2
    np.exp(chrom, out=chrom)  # lognormal clumps, mean 1
    granules = spectrum.noise(rng, np.float32(0.35) / px / 2.2, n)
    patches = spectrum.noise(rng, np.float32(3.0) / px / 2.2, n)

    nucleoli = np.zeros((n, p, p), np.float32)
    n_nucleoli = cells["n_nucleoli"].to_numpy().astype(int)
    for k in range(_MAX_NUCLEOLI):
        idx = np.flatnonzero(n_nucleoli > k)
        if idx.size == 0:
            continue
        rr = np.sqrt(rng.uniform(0, 1, idx.size)) * 0.5 * lobe_r0[idx]
        aa = rng.uniform(0, 2 * np.pi, idx.size)
        sig = rng.uniform(0.35, 0.6, idx.size) / px
        nucleoli[idx] += _blobs(dx[idx], dy[idx], x0[idx] + rr * np.cos(aa), y0[idx] + rr * np.sin(aa), sig)
    np.minimum(nucleoli, 1.0, out=nucleoli)
    nucleoli *= nuc_in

    # ---- optical path difference (um) and absorption (bright-field) ---------------------------------
    cyto_t = np.maximum(cell_t - nuc_t, 0.0)
    opd = cell_t * _b(_DN_CYTO * rng.normal(1.0, 0.08, n))
    opd += nuc_t * (np.float32(_DN_NUCLEUS) * (0.9 + 0.1 * chrom))
    opd += granules * cyto_t * (np.float32(_GRANULE_OPD) * _b(_col(cells, "granularity")))
    opd += nucleoli * np.float32(_NUCLEOLUS_OPD)
    absorb = cell_t * np.float32(_MU_CYTO) + nuc_t * np.float32(_MU_NUCLEUS)

    # ---- fluorescence densities: DAPI (chromatin), CK (cytoplasm), CD45 (membrane) -----------------
    fluo = np.empty((n, 3, p, p), np.float32)
    dapi, ck, cd45 = fluo[:, 0], fluo[:, 1], fluo[:, 2]
    np.multiply(nuc_dome, chrom, out=dapi)
    dapi *= 1.0 - 0.6 * nucleoli
    dapi *= _b(_col(cells, "dapi_level") * _col(pat, "dapi_peak"))
    np.multiply(cyto_t, _b(1.0 / (2 * radius * px)), out=ck)
    fibre_w = _col(cells, "ck_fibres")
    idx = np.flatnonzero(fibre_w > 0)
    if idx.size:
        fib = spectrum.noise(rng, np.float32(2.0) / px / 2.2, idx.size)
        fib = np.exp(-((fib / 0.5) ** 2))  # thin ridges along the zero lines: a filament network
        w = _b(fibre_w[idx])
        ck[idx] *= (1.0 - w) + w * (0.45 + 1.4 * fib)
    ck *= 1.0 + 0.25 * patches
    ck *= _b(_col(cells, "ck_level") * _col(pat, "ck_peak"))
    width = np.float32(_MEMBRANE_UM) / px
    ring = (r - outline) / width
    np.exp(-0.5 * ring * ring, out=cd45)
    cd45 += 0.22 * cell_in
    cd45 *= 1.0 + 0.35 * patches
    cd45 *= _b(_col(cells, "cd45_level") * _col(pat, "cd45_peak"))
    del ring, patches

    # ---- neighbour cell cut by the crop edge ---------------------------------------------------------
    neighbour = cells["neighbour"].to_numpy()
    idx = np.flatnonzero(neighbour != "none")
    if idx.size:
        m = idx.size
        is_ctc = neighbour[idx] == "ctc"
        nr = np.where(is_ctc, rng.uniform(12, 20, m), rng.uniform(8, 14, m)) / px / 2
        ang = rng.uniform(0, 2 * np.pi, m)
        edge = (size / 2) / np.maximum(np.abs(np.cos(ang)), np.abs(np.sin(ang)))
        dist = edge + nr * rng.uniform(-0.5, 0.7, m)
        dist = np.maximum(dist, radius[idx] * 1.1 + nr + 2.0 + np.hypot(cx[idx] - centre, cy[idx] - centre))
        ddx = dx[idx] + _b(cx[idx] - centre - dist * np.cos(ang))
        ddy = dy[idx] + _b(cy[idx] - centre - dist * np.sin(ang))
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
    del granules, chrom, cell_t, nuc_t, cyto_t, nuc_dome, nucleoli, r, outline

    # ---- debris specks anywhere in the crop --------------------------------------------------------
    n_debris = cells["n_debris"].to_numpy().astype(int)
    for k in range(_MAX_DEBRIS):
        idx = np.flatnonzero(n_debris > k)
        if idx.size == 0:
            continue
        m = idx.size
        bx = PAD + rng.uniform(0, size, m) - cx[idx]
        by = PAD + rng.uniform(0, size, m) - cy[idx]
        blob = _blobs(dx[idx], dy[idx], bx, by, rng.uniform(0.3, 1.0, m) / px)
        opd[idx] += blob * _b(rng.uniform(0.005, 0.03, m))
        absorb[idx] += blob * _b(rng.uniform(0.02, 0.15, m))
        sub = pat.iloc[idx]
        for c, name in enumerate(("dapi_peak", "ck_peak", "cd45_peak")):
            lit = rng.uniform(0, 1, m) < 0.35
            level = np.where(lit, rng.lognormal(np.log(0.15), 0.7, m), 0.0)
            fluo[idx, c] += blob * _b(level * _col(sub, name))

    # ---- optics: TIE bright-field and blurred fluorescence ------------------------------------------
    gauss = spectrum.gaussian(_col(cells, "blur_sigma_um") / px)
    crop = (slice(None), slice(PAD, PAD + size), slice(PAD, PAD + size))
    f_opd = sfft.rfft2(opd, workers=1)
    del opd
    f_opd *= spectrum.k2 * (_b(_col(cells, "bf_defocus_um")) / px**2)  # -z laplacian(OPD) <-> +z k^2 OPD^
    f_opd *= gauss
    bf_rel = sfft.irfft2(f_opd, s=(p, p), workers=1)[crop]
    bf_rel -= absorb[crop]
    del f_opd, absorb
    f_fluo = sfft.rfft2(fluo, workers=1)
    del fluo, dapi, ck, cd45
    f_fluo *= gauss[:, None]
    fluo = sfft.irfft2(f_fluo, s=(p, p), workers=1)[:, :, PAD : PAD + size, PAD : PAD + size]
    del f_fluo

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
    return _camera(rng, images, _col(pat, "camera_gain"), _col(pat, "read_noise")), _masks(cell_in, nuc_in)


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
