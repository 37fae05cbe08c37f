"""Vectorised renderer of DEPArray-like single-cell crops.

All pixel work runs on batches ``[n, P, P]`` in float32, where ``P = size + 2 * pad`` is a padded canvas
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

__all__ = ["render_batch"]

CHANNELS = ("BF", "DAPI", "CK", "CD45")

#: Refractive-index increments over the medium (dimensionless) of cytoplasm and the extra of nucleus.
_DN_CYTO = 0.022
_DN_NUCLEUS = 0.012
#: Absorption coefficients (1/um) of cytoplasm and nucleus in bright-field.
_MU_CYTO = 0.0012
_MU_NUCLEUS = 0.004
#: Diffraction-limited PSF sigma (um) and extra blur per um of defocus.
_PSF_SIGMA_UM = 0.3
_DEFOCUS_BLUR = 0.12
#: Maximum number of nucleus lobes / fragments, nucleoli and debris specks per crop.
_MAX_LOBES = 6
_MAX_NUCLEOLI = 4
_MAX_DEBRIS = 3
#: Shot noise is drawn exactly below this many photo-electrons.
_POISSON_EXACT_BELOW = 64.0


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

    def gaussian(self, sigma_px: np.ndarray) -> np.ndarray:
        """Transfer function of a Gaussian blur, one per cell: ``[n, P, P//2+1]``."""
        return np.exp(self.k2 * (-0.5 * _b(sigma_px) ** 2))

    def noise(self, rng: np.random.Generator, scale_px: np.ndarray | float, n: int) -> np.ndarray:
        """Band-pass Gaussian noise with unit variance and grain size about ``scale_px``: ``[n, P, P]``.

        White complex noise is shaped in the frequency domain by ``(k s)^2 exp(-(k s)^2 / 2)``, which peaks
        at a wavelength of about ``4.4 s``, and brought back by one inverse FFT.
        """
        s2 = np.broadcast_to(np.asarray(scale_px, dtype=np.float32), (n,)).astype(np.float32) ** 2
        ks = self.k2 * s2[:, None, None]
        filt = ks * np.exp(-0.5 * ks)
        power = 2.0 * np.einsum("nyx,x->n", filt * filt, self.weight) / float(self.p) ** 4
        filt *= (1.0 / np.sqrt(np.maximum(power, 1e-30)))[:, None, None].astype(np.float32)
        white = rng.standard_normal((n, self.p, self.k2.shape[1], 2), dtype=np.float32).view(np.complex64)[..., 0]
        white *= filt
        return sfft.irfft2(white, s=(self.p, self.p), workers=1)


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
    pad = 8
    p = size + 2 * pad
    if spectrum is None or spectrum.p != p:
        spectrum = _Spectrum(p)
    px = np.float32(pixel_size_um)
    pat = patients.set_index("sample_id").loc[cells["sample_id"].to_numpy()]

    # ---- per-cell geometry (pixels) ----------------------------------------------------------------
    radius = _col(cells, "cell_diameter_um") / (2 * px)
    nuc_radius = _col(cells, "nucleus_diameter_um") / (2 * px)
    centre = (p - 1) / 2.0
    cx = centre + _col(cells, "offset_x_px")
    cy = centre + _col(cells, "offset_y_px")
    grid = np.arange(p, dtype=np.float32)
    dx = grid[None, None, :] - _b(cx)  # [n, 1, P]
    dy = grid[None, :, None] - _b(cy)  # [n, P, 1]
    r2 = dx * dx + dy * dy  # [n, P, P]
    r = np.sqrt(r2) + np.float32(1e-3)
    z = (dx + 1j * dy).astype(np.complex64)
    z /= r

    subtype = cells["subtype"].to_numpy()
    cell_coef = _harmonic_coefficients(rng, _col(cells, "irregularity").astype(np.float64))
    nuc_coef = _harmonic_coefficients(rng, _col(cells, "nucleus_irregularity").astype(np.float64))
    outline = _b(radius) * (1.0 + _harmonic(z, cell_coef))  # R(theta) in px
    cell_in = r < outline
    cell_dome = np.sqrt(np.maximum(1.0 - (r / outline) ** 2, 0.0))  # normalised thickness, 0..1
    cell_t = cell_dome * _b(2 * radius * px)  # thickness, um

    # ---- nucleus: up to _MAX_LOBES discs (lobes or fragments), lobe 0 irregular, optional indentation --
    n_lobes = cells["n_lobes"].to_numpy().astype(int)
    offset_angle = rng.uniform(0, 2 * np.pi, n)
    offset = _col(cells, "nucleus_offset") * radius
    lobe_x = np.zeros((n, _MAX_LOBES), np.float32)
    lobe_y = np.zeros((n, _MAX_LOBES), np.float32)
    lobe_r = np.zeros((n, _MAX_LOBES), np.float32)
    lobe_x[:, 0] = offset * np.cos(offset_angle)
    lobe_y[:, 0] = offset * np.sin(offset_angle)
    lobe_r[:, 0] = nuc_radius
    multi = n_lobes > 1
    apoptotic = subtype == "ctc_apoptotic"
    if multi.any():
        # lobes along an arc (neutrophil) or fragments scattered in the cell (apoptotic)
        m = np.maximum(n_lobes, 1).astype(np.float32)
        rho = nuc_radius / np.sqrt(m) * 1.12
        arc = np.minimum(0.46 * radius, np.maximum(radius - rho - 1.0, 0.0))
        step = 2 * np.arcsin(np.clip(1.7 * rho / (2 * np.maximum(arc, 1e-3)), 0, 1))
        start = rng.uniform(0, 2 * np.pi, n)
        jitter = rng.normal(0, 0.12, (n, _MAX_LOBES))
        size_jitter = rng.uniform(0.85, 1.15, (n, _MAX_LOBES))
        scatter_r = np.sqrt(rng.uniform(0, 1, (n, _MAX_LOBES))) * 0.55 * radius[:, None]
        scatter_a = rng.uniform(0, 2 * np.pi, (n, _MAX_LOBES))
        j = np.arange(_MAX_LOBES)[None, :]
        ang = start[:, None] + (j - (m[:, None] - 1) / 2) * step[:, None]
        ax = arc[:, None] * (1 + jitter) * np.cos(ang)
        ay = arc[:, None] * (1 + jitter) * np.sin(ang)
        fx = scatter_r * np.cos(scatter_a)
        fy = scatter_r * np.sin(scatter_a)
        sel = multi[:, None] & (j < n_lobes[:, None])
        lobe_x = np.where(sel, np.where(apoptotic[:, None], fx, ax), lobe_x).astype(np.float32)
        lobe_y = np.where(sel, np.where(apoptotic[:, None], fy, ay), lobe_y).astype(np.float32)
        lobe_r = np.where(sel, rho[:, None] * size_jitter, lobe_r).astype(np.float32)

    nuc_outline = _b(lobe_r[:, 0]) * (1.0 + _harmonic(z, nuc_coef))
    d2 = (dx - _b(lobe_x[:, 0])) ** 2 + (dy - _b(lobe_y[:, 0])) ** 2
    nuc_dome = np.sqrt(np.maximum(1.0 - d2 / nuc_outline**2, 0.0))
    nuc_t = nuc_dome * _b(2 * lobe_r[:, 0] * px)
    for k in range(1, _MAX_LOBES):
        idx = np.flatnonzero(n_lobes > k)
        if idx.size == 0:
            continue
        d2 = (dx[idx] - _b(lobe_x[idx, k])) ** 2 + (dy[idx] - _b(lobe_y[idx, k])) ** 2
        dome = _dome(d2, _b(lobe_r[idx, k]))
        nuc_dome[idx] = np.maximum(nuc_dome[idx], dome)
        nuc_t[idx] = np.maximum(nuc_t[idx], dome * _b(2 * lobe_r[idx, k] * px))

    indent = _col(cells, "indentation")
    idx = np.flatnonzero(indent > 0)
    if idx.size:
        # kidney shape: a disc bitten out on the side facing the cell centre
        ang = offset_angle[idx] + np.pi + rng.normal(0, 0.3, idx.size)
        dist = lobe_r[idx, 0] * rng.uniform(0.9, 1.1, idx.size)
        ix = lobe_x[idx, 0] + dist * np.cos(ang)
        iy = lobe_y[idx, 0] + dist * np.sin(ang)
        ir = indent[idx] * lobe_r[idx, 0]
        d = np.sqrt((dx[idx] - _b(ix)) ** 2 + (dy[idx] - _b(iy)) ** 2)
        keep = np.clip((d - _b(ir)) / 1.2, 0.0, 1.0)
        nuc_dome[idx] *= keep
        nuc_t[idx] *= keep

    nuc_t = np.minimum(nuc_t, cell_t * 0.92)
    nuc_dome *= cell_in
    nuc_in = nuc_t > 0.05

    # ---- textures --------------------------------------------------------------------------------
    chrom_scale = _col(cells, "chromatin_scale_um") / px / 2.2
    chrom = spectrum.noise(rng, chrom_scale, n)
    contrast = _b(_col(cells, "chromatin_contrast"))
    chrom = np.exp(contrast * chrom - 0.5 * contrast**2)
    granules = spectrum.noise(rng, np.float32(0.35) / px / 2.2, n)
    fibres = spectrum.noise(rng, np.float32(0.9) / px / 2.2, n)
    patches = spectrum.noise(rng, np.float32(3.0) / px / 2.2, n)

    # nucleoli: Gaussian blobs inside lobe 0
    nucleoli = np.zeros((n, p, p), np.float32)
    n_nucleoli = cells["n_nucleoli"].to_numpy().astype(int)
    for k in range(_MAX_NUCLEOLI):
        idx = np.flatnonzero(n_nucleoli > k)
        if idx.size == 0:
            continue
        rr = np.sqrt(rng.uniform(0, 1, idx.size)) * 0.5 * lobe_r[idx, 0]
        aa = rng.uniform(0, 2 * np.pi, idx.size)
        sig = rng.uniform(0.35, 0.6, idx.size) / px
        nucleoli[idx] += _blobs(
            dx[idx], dy[idx], lobe_x[idx, 0] + rr * np.cos(aa), lobe_y[idx, 0] + rr * np.sin(aa), sig
        )
    nucleoli = np.minimum(nucleoli, 1.0) * nuc_in

    # ---- optical path difference and absorption (bright-field) -----------------------------------
    dn = rng.normal(1.0, 0.08, n).astype(np.float32)
    cyto_t = np.maximum(cell_t - nuc_t, 0.0)
    granularity = _b(_col(cells, "granularity"))
    opd = cell_t * _b(_DN_CYTO * dn)
    opd += nuc_t * (np.float32(_DN_NUCLEUS) * (1.0 + 0.25 * (chrom - 1.0)))
    opd += granules * cyto_t * (np.float32(0.012) * granularity)
    opd += nucleoli * np.float32(0.05)
    absorb = cell_t * np.float32(_MU_CYTO) + nuc_t * np.float32(_MU_NUCLEUS)
    absorb += np.abs(granules) * cyto_t * (np.float32(0.002) * granularity)

    # ---- fluorescence densities -------------------------------------------------------------------
    dapi = nuc_dome * chrom * (1.0 - 0.6 * nucleoli) * _b(_col(cells, "dapi_level") * _col(pat, "dapi_peak"))
    cyto_norm = np.maximum(cell_t - 0.75 * nuc_t, 0.0) * _b(1.0 / (2 * radius * px))
    fil = np.exp(-((fibres / 0.45) ** 2))
    fw = _b(_col(cells, "ck_fibres"))
    ck_tex = (1.0 - fw) + fw * (0.25 + 1.6 * fil)
    ck = cyto_norm * ck_tex * (1.0 + 0.25 * patches)
    ck *= _b(_col(cells, "ck_level") * _col(pat, "ck_peak"))
    width = np.float32(0.45) / px
    ring = np.exp(-0.5 * ((r - outline) / width) ** 2) + 0.22 * cell_in
    cd45 = ring * (1.0 + 0.35 * patches) * _b(_col(cells, "cd45_level") * _col(pat, "cd45_peak"))

    # ---- neighbour cell cut by the crop edge ---------------------------------------------------------
    neighbour = cells["neighbour"].to_numpy()
    idx = np.flatnonzero(neighbour != "none")
    if idx.size:
        m = idx.size
        is_ctc = neighbour[idx] == "ctc"
        nd = np.where(is_ctc, rng.uniform(12, 20, m), rng.uniform(8, 14, m)) / px
        nr = nd / 2
        ang = rng.uniform(0, 2 * np.pi, m)
        edge = (size / 2) / np.maximum(np.abs(np.cos(ang)), np.abs(np.sin(ang)))
        dist = edge + nr * rng.uniform(-0.5, 0.7, m)
        dist = np.maximum(dist, radius[idx] * 1.1 + nr + 2.0 + np.hypot(cx[idx] - centre, cy[idx] - centre))
        nx = centre + dist * np.cos(ang)
        ny = centre + dist * np.sin(ang)
        ddx = dx[idx] + _b(cx[idx] - nx)
        ddy = dy[idx] + _b(cy[idx] - ny)
        d2 = ddx * ddx + ddy * ddy
        dome = _dome(d2, _b(nr))
        na = rng.uniform(0, 2 * np.pi, m)
        nn_r = nr * np.where(is_ctc, 0.7, rng.uniform(0.55, 0.78, m))
        off = nr * rng.uniform(0, 0.15, m)
        nd2 = (ddx - _b(off * np.cos(na))) ** 2 + (ddy - _b(off * np.sin(na))) ** 2
        ndome = np.minimum(_dome(nd2, _b(nn_r)), dome)
        t = dome * _b(2 * nr * px)
        tn = ndome * _b(2 * nn_r * px)
        opd[idx] += t * np.float32(_DN_CYTO) + tn * np.float32(_DN_NUCLEUS)
        opd[idx] += granules[idx] * (t - tn) * np.float32(0.008)
        absorb[idx] += t * np.float32(_MU_CYTO) + tn * np.float32(_MU_NUCLEUS)
        sub = pat.iloc[idx]
        dapi[idx] += ndome * chrom[idx] * _b(_col(sub, "dapi_peak") * rng.lognormal(0, 0.15, m))
        level = np.where(is_ctc, rng.lognormal(0, 0.5, m), 0.01)
        ck[idx] += np.maximum(dome - 0.75 * ndome, 0) * _b(level * _col(sub, "ck_peak"))
        nring = np.exp(-0.5 * ((np.sqrt(d2) - _b(nr)) / width) ** 2) + 0.22 * (dome > 0)
        level = np.where(is_ctc, 0.0, rng.lognormal(np.log(0.8), 0.25, m))
        cd45[idx] += nring * _b(level * _col(sub, "cd45_peak"))

    # ---- debris specks anywhere in the crop --------------------------------------------------------
    n_debris = cells["n_debris"].to_numpy().astype(int)
    for k in range(_MAX_DEBRIS):
        idx = np.flatnonzero(n_debris > k)
        if idx.size == 0:
            continue
        m = idx.size
        bx = pad + rng.uniform(0, size, m) - cx[idx]
        by = pad + rng.uniform(0, size, m) - cy[idx]
        sig = rng.uniform(0.3, 1.0, m) / px
        blob = _blobs(dx[idx], dy[idx], bx, by, sig)
        opd[idx] += blob * _b(rng.uniform(0.02, 0.12, m))
        absorb[idx] += blob * _b(rng.uniform(0.01, 0.12, m))
        sub = pat.iloc[idx]
        for plane, name in ((dapi, "dapi_peak"), (ck, "ck_peak"), (cd45, "cd45_peak")):
            lit = rng.uniform(0, 1, m) < 0.35
            level = np.where(lit, rng.lognormal(np.log(0.15), 0.7, m), 0.0)
            plane[idx] += blob * _b(level * _col(sub, name))

    # ---- optics: TIE bright-field and blurred fluorescence ------------------------------------------
    sigma_px = _col(cells, "blur_sigma_um") / px
    gauss = spectrum.gaussian(sigma_px)
    z_um = _b(_col(cells, "bf_defocus_um"))
    f_opd = sfft.rfft2(opd, workers=1)
    f_abs = sfft.rfft2(absorb, workers=1)
    f_opd *= spectrum.k2 * (z_um / px**2)  # -z * laplacian(OPD) <-> +z k^2 OPD^
    f_opd -= f_abs
    f_opd *= gauss
    bf_rel = sfft.irfft2(f_opd, s=(p, p), workers=1)[:, pad : pad + size, pad : pad + size]
    del f_opd, f_abs, opd, absorb

    fluo = np.stack([dapi, ck, cd45], axis=1)
    del dapi, ck, cd45
    f_fluo = sfft.rfft2(fluo, workers=1)
    f_fluo *= gauss[:, None]
    fluo = sfft.irfft2(f_fluo, s=(p, p), workers=1)[:, :, pad : pad + size, pad : pad + size]
    del f_fluo

    # ---- illumination, background, camera --------------------------------------------------------
    xs = np.linspace(-1, 1, size, dtype=np.float32)
    gx = _b(_col(cells, "illum_grad_x"))
    gy = _b(_col(cells, "illum_grad_y"))
    illum = 1.0 + gx * xs[None, None, :] + gy * xs[None, :, None]
    illum *= _b(_col(cells, "illum_gain") * _col(pat, "bf_intensity"))
    images = np.empty((n, 4, size, size), np.float32)
    images[:, 0] = illum * (1.0 + bf_rel)
    background = np.stack([_col(pat, c) for c in ("dapi_background", "ck_background", "cd45_background")], 1)
    shade = 1.0 + 0.3 * (illum / _b(_col(pat, "bf_intensity")) - 1.0)
    images[:, 1:] = fluo + background[:, :, None, None] * shade[:, None]
    images += _col(pat, "camera_offset")[:, None, None, None]
    np.maximum(images, 0.0, out=images)

    gain = _col(pat, "camera_gain")[:, None, None, None]
    electrons = images / gain
    noise = rng.standard_normal(images.shape, dtype=np.float32)
    noisy = electrons + np.sqrt(electrons) * noise
    low = electrons < _POISSON_EXACT_BELOW
    if low.any():
        noisy[low] = rng.poisson(electrons[low]).astype(np.float32)
    noisy *= gain
    noisy += rng.standard_normal(images.shape, dtype=np.float32) * _col(pat, "read_noise")[:, None, None, None]
    out = np.clip(np.rint(noisy), 0, 65535).astype(np.uint16)

    mask = cell_in.astype(np.uint8)
    mask[nuc_in] = 2
    return out, np.ascontiguousarray(mask[:, pad : pad + size, pad : pad + size])
