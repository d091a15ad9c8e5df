"""``aptnn spectrum | merge``: IR (or, with ``--raman``, Raman) spectra from stream files, and joining the parts of
one run."""
from __future__ import annotations

import click
from click.core import ParameterSource

from aptnn.cli.errors import run_command

#: options of the IR spectrum only (refused with --raman), and of the Raman spectra only (refused without it)
IR_ONLY = ("eps_inf",)
RAMAN_ONLY = ("raman_form", "laser_nm")


def _flag(ctx: click.Context, name: str) -> str:
    return next(p.opts[0] for p in ctx.command.params if p.name == name)


def check_mode(ctx: click.Context, kwargs: dict) -> None:
    """One :class:`click.UsageError` for options that do not fit the spectrum asked for (IR or --raman)."""
    given = {name for name in kwargs if ctx.get_parameter_source(name) not in (ParameterSource.DEFAULT, None)}
    if kwargs["raman"]:
        wrong = [_flag(ctx, n) for n in IR_ONLY if n in given]
        if wrong:
            raise click.UsageError(f"{', '.join(wrong)}: only for the IR spectrum, not with --raman", ctx)
        if kwargs["raman_form"] == "absolute" and kwargs["laser_nm"] is None:
            raise click.UsageError("--raman-form absolute needs --laser-nm (the excitation wavelength in nm)", ctx)
    else:
        wrong = [_flag(ctx, n) for n in RAMAN_ONLY if n in given]
        if wrong:
            raise click.UsageError(f"{', '.join(wrong)}: only with --raman (Raman spectra from /dAdt)", ctx)


def run_raman(streams, output, plot, max_lag, window_name, qcf, temperature, volume, series, blocks, biased,
              keep_mean, pad, max_wavenumber, raman_form, laser_nm, no_decompose=False, no_members=False,
              model_band_scale=None):
    """``aptnn spectrum --raman``: the Raman spectra of ``streams`` (their ``/dAdt``) into the CSV ``output`` (and
    the PNG ``plot``), with the group decomposition and the committee model band unless switched off."""
    from aptnn.raman import compute_raman
    from aptnn.spectrum import REQUIRED_WAVENUMBER
    from aptnn.spectrum_checks import positive_number

    positive_number(max_wavenumber, "maximum wavenumber (--max-wavenumber)", "cm⁻¹")
    spec = compute_raman(list(streams), max_lag_fs=max_lag, window_name=window_name, qcf=qcf,
                         temperature_K=temperature, volume_A3=volume, series=list(series) or None, n_blocks=blocks,
                         biased=biased, remove_mean=not keep_mean, pad=pad,
                         required_wavenumber=min(REQUIRED_WAVENUMBER, max_wavenumber), form=raman_form,
                         laser_nm=laser_nm, decompose=not no_decompose, members=not no_members,
                         model_band_scale=model_band_scale)
    spec.write_csv(output)
    if plot:
        spec.plot(plot, title=", ".join(streams), max_wavenumber=max_wavenumber)
    click.echo(f"{spec.summary()}; wrote {output}" + (f" and {plot}" if plot else ""))
    return spec


def run_spectrum(streams, output, plot, max_lag, window_name, qcf, temperature, volume, series, blocks, biased,
                 keep_mean, pad, no_decompose, max_wavenumber, no_members, model_band_scale, eps_inf, raman=False,
                 raman_form="reduced", laser_nm=None):
    """``aptnn spectrum``: the IR spectrum of ``streams`` into the CSV ``output`` (and the PNG ``plot``); with
    ``raman`` the Raman spectra (:func:`run_raman`)."""
    from aptnn.spectrum import REQUIRED_WAVENUMBER, compute_spectrum
    from aptnn.spectrum_checks import positive_number

    if raman:
        return run_raman(streams, output, plot, max_lag, window_name, qcf, temperature, volume, series, blocks,
                         biased, keep_mean, pad, max_wavenumber, raman_form, laser_nm, no_decompose, no_members,
                         model_band_scale)
    positive_number(max_wavenumber, "maximum wavenumber (--max-wavenumber)", "cm⁻¹")
    spec = compute_spectrum(list(streams), max_lag_fs=max_lag, window_name=window_name, qcf=qcf,
                            temperature_K=temperature, volume_A3=volume, series=list(series) or None,
                            decompose=not no_decompose, n_blocks=blocks, biased=biased,
                            remove_mean=not keep_mean, pad=pad,
                            required_wavenumber=min(REQUIRED_WAVENUMBER, max_wavenumber),
                            members=not no_members, model_band_scale=model_band_scale, eps_inf=eps_inf)
    spec.write_csv(output)
    if plot:
        spec.plot(plot, title=", ".join(streams), max_wavenumber=max_wavenumber)
    click.echo(f"{spec.summary()}; wrote {output}" + (f" and {plot}" if plot else ""))
    return spec


@click.command()
@click.argument("streams", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False))
@click.option("-o", "--output", default="spectrum.csv", show_default=True,
              help="CSV, one column per quantity named name_unit: wavenumber_cm-1, total (alpha_n_cm-1, or "
                   "cross_section_cm2 without a volume), ± error, decomposition columns; for a committee also "
                   "member<k>, model_std, stat_std, combined_std (unit of the total); with --eps-inf also "
                   "eps_real, eps_imag, n, kappa (_dimensionless) and alpha_cm-1. With --raman: iso, aniso, vv, vh "
                   "and their _err (unit: see --raman), depolarization_ratio_dimensionless, per group <pol>_group:X "
                   "and cross term <pol>_group:X|group:Y, for a committee <pol>_member<k>, <pol>_model_std, "
                   "<pol>_combined_std (pol = iso, aniso, vv, vh).")
@click.option("--plot", default=None, help="Also write a PNG plot here (a second panel with α and n when "
              "--eps-inf is given; with --raman VV (± model band), VH, iso, the groups' VV and a second panel with "
              "ρ = VH/VV).")
@click.option("--max-lag", default=2000.0, show_default=True,
              help="Correlation length in fs, > 0 (resolution ~1/(c·lag)); capped at the shortest file.")
@click.option("--window", "window_name", default="hann", show_default=True,
              type=click.Choice(["hann", "hamming", "blackman", "gaussian", "none"]),
              help="Window applied to the correlation function (w(0) = 1).")
@click.option("--qcf", default="harmonic", show_default=True,
              type=click.Choice(["harmonic", "standard", "schofield", "none"]),
              help="Quantum correction factor; harmonic reproduces the paper's eq. 2.")
@click.option("--temperature", type=float, default=None,
              help="K, > 0; overrides the temperature_K of every file (default: each file's own).")
@click.option("--volume", type=float, default=None,
              help="Å³, > 0; overrides the volume_A3 of every file (default: each file's own; files without "
                   "one give the cross-section per system in cm²; the two kinds cannot be mixed).")
@click.option("--series", multiple=True, help="Series averaged into the total (glob, e.g. 'bead*'); "
              "default total, else centroid. Committee member series (member<k>) only when named "
              "('member2', 'member*'), never by other globs such as '*'.")
@click.option("--blocks", type=int, default=None,
              help="Time blocks per file for the ± standard error: ≥ 1, each of at least 2 frames "
                   "(default 8, fewer for files under 16 frames).")
@click.option("--biased", is_flag=True, help="Divide lag sums by N instead of N − lag.")
@click.option("--keep-mean", is_flag=True, help="Do not subtract the mean of dM/dt.")
@click.option("--pad", default=4, show_default=True,
              help="Zero-padding factor of the correlation (finer grid): whole number ≥ 1, "
                   "pad × lags ≤ 2²⁰ points.")
@click.option("--no-decompose", is_flag=True, help="Skip the group auto/cross columns (IR and --raman).")
@click.option("--max-wavenumber", default=4500.0, show_default=True,
              help="Upper limit of the plot (cm⁻¹), > 0. The sampling must represent min(4000, this) cm⁻¹ "
                   "(1/(2c·Δt)): coarser streams are refused unless you lower it.")
@click.option("--no-members", is_flag=True,
              help="Committee streams (series member0…): skip the members' spectra and the model band (IR and "
                   "--raman).")
@click.option("--model-band-scale", type=float, default=None,
              help="Dimensionless factor s > 0 of the model band σ_model = s × std over the members' spectra "
                   "(same unit as the spectrum); overrides the files' uncertainty_scale attribute (1 where absent).")
@click.option("--eps-inf", type=float, default=None,
              help="ε∞ ≥ 1, the electronic permittivity above the IR bands (dimensionless, e.g. 1.77 for water): "
                   "also ε'(ν̃) by Kramers–Kronig, ε'' = αn/(2πν̃), the refractive index n, the extinction "
                   "coefficient κ and α = 4πν̃κ in cm⁻¹. Needs a volume (α n in cm⁻¹).")
@click.option("--raman", is_flag=True,
              help="Raman instead of IR, from each stream's /dAdt: dα/dt in e·Å²/(V·fs), Voigt order xx, yy, zz, "
                   "yz, xz, xy (streams without it are refused). Gives the isotropic, anisotropic, VV and VH "
                   "spectra and the depolarisation ratio ρ = VH/VV (dimensionless, 0…3/4), with the group "
                   "decomposition and the committee model band as for IR. Not with the IR-only --eps-inf.")
@click.option("--raman-form", type=click.Choice(["reduced", "absolute"]), default="reduced", show_default=True,
              help="With --raman: reduced spectra in Å⁴·amu⁻¹ per cm⁻¹ (no laser or Bose factor; 45·(VV + VH) "
                   "integrates to the Raman activity), or absolute Stokes cross-sections in cm²·sr⁻¹ per cm⁻¹ "
                   "(per system; cm⁻¹·sr⁻¹ per cm⁻¹ with a volume), which need --laser-nm.")
@click.option("--laser-nm", type=float, default=None,
              help="With --raman-form absolute (required there): the excitation wavelength in nm, > 0 "
                   "(e.g. 532).")
def spectrum(**kwargs):
    """IR spectrum from dM/dt stream files (HDF5; several files = independent trajectories, averaged).

    α(ω)n(ω) = πβ/(3Vcε₀)·(1/2π)∫dt e^{-iωt}⟨Ṁ(0)·Ṁ(t)⟩ in cm⁻¹ (harmonic quantum correction), or the
    absorption cross-section in cm² for open boundaries. Each file keeps its own temperature and volume
    (the result is the pair-count-weighted average of the single-file spectra) unless --temperature or
    --volume is given. Committee streams (series member0…member<M−1>) also give the model band: the spread
    of the members' spectra (× the calibration uncertainty_scale), next to the statistical block error.
    With --eps-inf, α n is split into α (cm⁻¹) and n by Kramers–Kronig. Prints peak positions and the
    integrated intensity (± model ± statistical for a committee).

    With --raman: Raman spectra from dα/dt (/dAdt, e·Å²/(V·fs)) with the same correlation options, reduced
    (Å⁴·amu⁻¹ per cm⁻¹) or absolute (--raman-form absolute --laser-nm NM: cm²·sr⁻¹ per cm⁻¹), group auto and
    cross terms and the committee model band as for IR; prints the VV peaks and ρ there (and the VV integral
    ± model ± statistical for a committee).
    """
    check_mode(click.get_current_context(), kwargs)
    run_command(lambda: run_spectrum(**kwargs))


def run_merge(parts, output) -> str:
    """``aptnn merge``: concatenate the stream files ``parts`` into ``output``; returns its path."""
    from aptnn.io.stream import n_frames
    from aptnn.io.stream_repair import merge_streams

    merged = merge_streams(list(parts), output)
    click.echo(f"wrote {merged} ({n_frames(output)} frames)")
    return merged


@click.command()
@click.argument("parts", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False))
@click.option("-o", "--output", required=True, help="Merged stream file (HDF5).")
def merge(**kwargs):
    """Concatenate consecutive dM/dt stream files of one run (e.g. the shards of an interrupted
    `aptnn-post --distributed`, OUTPUT.parts/*.h5) into one stream file, in the order given."""
    run_command(lambda: run_merge(**kwargs))
