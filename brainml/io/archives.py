"""Gzip and zip, opened in memory and never extracted, with caps on what they unpack to and on member paths."""

from __future__ import annotations

import gzip
import zipfile
import zlib
from collections import Counter
from collections.abc import Callable
from io import BytesIO

from .dicom import dicom_scan, parse_dicom, sort_series
from .scan import MAX_UNPACKED_BYTES, Scan, ScanError, size_text
from .sniff import IMAGE_LABELS, detect_format, dicom_name_hint, looks_like_raw_dicom

MAX_ZIP_MEMBERS = 10_000


def _too_big_to_unpack(what: str) -> ScanError:
    return ScanError(
        f"The {what} unpacks to more than {size_text(MAX_UNPACKED_BYTES)}, the most BrainML opens (this is how "
        "'zip bombs' work, so it is refused). Upload fewer or smaller files."
    )


def gunzip(data: bytes) -> bytes:
    try:
        with gzip.GzipFile(fileobj=BytesIO(data)) as stream:
            inner = stream.read(MAX_UNPACKED_BYTES + 1)
    except EOFError as error:
        raise ScanError("The .gz file is cut off: it ends before its contents do. Upload the full file.") from error
    except (OSError, zlib.error) as error:
        raise ScanError("The .gz file is damaged and cannot be unpacked. Compress the scan again.") from error
    if len(inner) > MAX_UNPACKED_BYTES:
        raise _too_big_to_unpack(".gz file")
    if not inner:
        raise ScanError("The .gz file is empty inside. Compress the scan again.")
    return inner


def _unsafe_member(member: str) -> bool:
    """Absolute paths and '..' could point outside any folder; they are never read (nothing is extracted)."""
    path = member.replace("\\", "/")
    return path.startswith("/") or (len(path) > 1 and path[1] == ":") or ".." in path.split("/")


def _system_junk(member: str) -> bool:
    base = member.replace("\\", "/").rsplit("/", 1)[-1]
    return member.startswith("__MACOSX/") or base.startswith("._") or base in (".DS_Store", "Thumbs.db", "DICOMDIR")


def read_zip(data: bytes, name: str | None, read_member: Callable[..., Scan]) -> Scan:
    """Read a zip's scan without extracting anything.

    Args:
        data: the zip's bytes.
        name: the zip's name, for messages.
        read_member: the format dispatcher, called as ``read_member(data, name, inside="zip")`` for a NIfTI volume
            or image member. It is passed in because the dispatcher is also what calls this function.
    """
    try:
        archive = zipfile.ZipFile(BytesIO(data))
        infos = archive.infolist()
    except Exception as error:
        raise ScanError("The zip is damaged or cut off and cannot be opened. Create the zip again.") from error
    with archive:
        if len(infos) > MAX_ZIP_MEMBERS:
            raise ScanError(f"The zip holds {len(infos):,} entries; BrainML opens zips of up to {MAX_ZIP_MEMBERS:,}.")
        if any(info.filename == "[Content_Types].xml" for info in infos):
            raise ScanError("This file is an Office document (Word, Excel or PowerPoint), not an image or a scan.")
        skipped = Counter()
        members = []
        for info in infos:
            if info.is_dir() or _system_junk(info.filename):
                continue
            if _unsafe_member(info.filename):
                skipped["whose path leads outside the zip"] += 1
            elif info.flag_bits & 0x1:
                skipped["protected by a password"] += 1
            else:
                members.append(info)
        if sum(info.file_size for info in members) > MAX_UNPACKED_BYTES:
            raise _too_big_to_unpack("zip")
        contents, unpacked = [], 0
        for info in sorted(members, key=lambda item: item.filename):
            try:
                with archive.open(info) as stream:
                    blob = stream.read(min(info.file_size, MAX_UNPACKED_BYTES - unpacked) + 1)
            except MemoryError:
                raise
            except Exception:
                skipped["that could not be unpacked"] += 1
                continue
            unpacked += len(blob)
            if len(blob) > info.file_size or unpacked > MAX_UNPACKED_BYTES:
                raise _too_big_to_unpack("zip")
            if blob:
                contents.append((info.filename, blob))
    return _scan_from_members(contents, skipped, name, read_member)


def _scan_from_members(contents: list, skipped: Counter, name: str | None, read_member: Callable[..., Scan]) -> Scan:
    """A zip's DICOM files are one series; otherwise its first NIfTI volume, else its first image."""
    kinds = {member: detect_format(blob) for member, blob in contents}
    dicoms, dicom_problems = [], Counter()
    for member, blob in contents:
        kind = kinds[member]
        if kind == "DICOM" or (kind is None and (dicom_name_hint(member) or looks_like_raw_dicom(blob))):
            try:
                dicoms.append((member, parse_dicom(blob, certain=kind == "DICOM", name=member)))
            except ScanError as error:
                if kind == "DICOM":
                    dicom_problems[error.message.split(".")[0]] += 1
    if dicoms:
        return _dicom_series_scan(dicoms, dicom_problems, skipped, len(contents))
    for wanted in (("NIfTI", "GZIP"), tuple(IMAGE_LABELS)):
        for member, blob in contents:
            if kinds[member] in wanted:
                try:
                    scan = read_member(blob, member, inside="zip")
                except ScanError as error:
                    raise ScanError(error.message, f"{member} (in {name or 'the zip'})") from error.__cause__
                matching = sum(kinds[other] in wanted for other, _ in contents)
                scan.metadata["zip_member"] = member
                # Every file of the zip goes with it, so a batch reads them one by one without unpacking again.
                scan.members = tuple(contents)
                if matching > 1:
                    scan.metadata["note"] = (f"The zip holds {matching} such files; the first, {member}, is shown. "
                                             "Upload the others one at a time to see them.")
                return scan
    reasons = [f"skipped {count} entr{'y' if count == 1 else 'ies'} {why}" for why, count in skipped.items()]
    reasons += [f"{count} DICOM file{'' if count == 1 else 's'}: {why}" for why, count in dicom_problems.items()]
    detail = f" ({'; '.join(reasons)})" if reasons else ""
    raise ScanError(
        f"The zip holds no scans that BrainML can read{detail}. Put the DICOM files of one series, a NIfTI volume "
        "or images (PNG, JPEG ...) in the zip and upload it again."
    )


def _dicom_series_scan(dicoms: list, problems: Counter, skipped: Counter, n_members: int) -> Scan:
    """The DICOM files of a zip as one series: the largest series when there are several, slices in order."""
    by_series = {}
    for member, dataset in dicoms:
        key = (str(dataset.get("SeriesInstanceUID", "")), int(dataset.Rows), int(dataset.Columns))
        by_series.setdefault(key, []).append((member, dataset))
    largest = max(by_series.values(), key=len)
    ordered, sorted_by = sort_series(largest)
    scan = dicom_scan(ordered)
    scan.metadata.update({"files_in_series": len(ordered), "sorted_by": sorted_by, "zip_entries": n_members})
    if len(by_series) > 1:
        scan.metadata["note"] = (f"The zip holds {len(by_series)} series (or image sizes); the largest, "
                                 f"{len(ordered)} files, is shown. Zip one series at a time to choose.")
    left_out = sum(problems.values()) + sum(skipped.values())
    if left_out:
        scan.metadata["entries_left_out"] = left_out
    return scan
