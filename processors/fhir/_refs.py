"""Reference resolution inside one FHIR payload.

Handled reference forms (FHIR R4 §2.36 "Resolving references in Bundles"):

* ``#id``                       -> a resource in the current resource's ``contained``
* ``urn:uuid:...`` / ``urn:oid:...`` -> the Bundle entry with that ``fullUrl``
* ``https://base/Type/id[/_history/v]`` -> the entry with that fullUrl, else Type/id
* ``Type/id``                   -> resolved against the entry's own base URL when its
  fullUrl is a RESTful URL, else any entry whose resource is Type/id
* ``Type?identifier=sys|val``   -> conditional reference (transactions): an entry
  whose resource carries that identifier, else the identifier itself
* ``{"identifier": {...}}``     -> logical reference: the identifier
* anything else (opaque URLs)   -> the last path segment as the id, type unknown

Nothing is fetched: a reference that points outside the payload yields its type and
id (or identifier) only.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

from ._util import d, lst, s

_RESTFUL = re.compile(
    r"^(?P<base>(?:https?://[^?#]*/)?)(?P<type>[A-Z][A-Za-z]{1,63})/(?P<id>[A-Za-z0-9\-.]{1,64})"
    r"(?:/_history/(?P<vid>[A-Za-z0-9\-.]{1,64}))?$"
)


@dataclass(slots=True)
class Target:
    resource: dict[str, Any] | None = None
    rtype: str | None = None
    rid: str | None = None
    ident_system: str | None = None
    ident_value: str | None = None
    display: str | None = None
    contained: bool = False
    raw: str | None = None  # the reference string as written

    @property
    def resolved(self) -> bool:
        return self.resource is not None


def _id_from_url(url: str) -> str:
    if url.startswith(("urn:uuid:", "urn:oid:")):
        return url[9:] if url.startswith("urn:uuid:") else url[8:]
    m = _RESTFUL.match(url)
    if m:
        return m.group("id")
    return url.rstrip("/").rsplit("/", 1)[-1] or url


class BundleIndex:
    """fullUrl and Type/id lookups over a Bundle's entries (empty for a lone resource)."""

    __slots__ = ("by_url", "by_type_id", "by_identifier")

    def __init__(self) -> None:
        self.by_url: dict[str, dict[str, Any]] = {}
        self.by_type_id: dict[tuple[str, str], dict[str, Any]] = {}
        self.by_identifier: dict[tuple[str, str | None, str], dict[str, Any]] | None = None

    def add(self, full_url: str | None, resource: dict[str, Any]) -> None:
        rt = s(resource.get("resourceType"))
        rid = s(resource.get("id"))
        if full_url:
            self.by_url.setdefault(full_url, resource)
        if rt and rid:
            self.by_type_id.setdefault((rt, rid), resource)
        if rt and full_url and not rid:
            m = _RESTFUL.match(full_url)
            if m and m.group("type") == rt:
                self.by_type_id.setdefault((rt, m.group("id")), resource)

    def find_by_identifier(self, rtype: str, system: str | None, value: str) -> dict[str, Any] | None:
        if self.by_identifier is None:  # built lazily: conditional references are rare
            idx: dict[tuple[str, str | None, str], dict[str, Any]] = {}
            for res in self.by_url.values():
                rt = s(res.get("resourceType")) or ""
                for ident in lst(res.get("identifier")):
                    v = s(d(ident).get("value"))
                    if v:
                        idx.setdefault((rt, s(d(ident).get("system")), v), res)
                        idx.setdefault((rt, None, v), res)
            self.by_identifier = idx
        return self.by_identifier.get((rtype, system, value))


class Scope:
    """Where a resource sits: its contained resources, its entry's fullUrl, the Bundle."""

    __slots__ = ("resource", "full_url", "index", "_contained")

    def __init__(self, resource: dict[str, Any], full_url: str | None, index: BundleIndex) -> None:
        self.resource = resource
        self.full_url = full_url
        self.index = index
        self._contained: dict[str, dict[str, Any]] | None = None

    def contained(self, cid: str) -> dict[str, Any] | None:
        if self._contained is None:
            self._contained = {
                s(c.get("id")) or "": c for c in lst(self.resource.get("contained")) if isinstance(c, dict)
            }
        return self._contained.get(cid)

    def resolve(self, ref: object) -> Target:
        ref = d(ref)
        text = s(ref.get("reference"))
        t = Target(display=s(ref.get("display")), rtype=s(ref.get("type")), raw=text)
        ident = d(ref.get("identifier"))
        t.ident_system = s(ident.get("system"))
        t.ident_value = s(ident.get("value"))
        if not text:
            return t
        if text.startswith("#"):
            res = self.contained(text[1:]) if len(text) > 1 else self.resource
            if res is not None:
                t.resource, t.contained = res, len(text) > 1
                t.rtype = s(res.get("resourceType")) or t.rtype
            return t
        if text.startswith("urn:"):
            res = self.index.by_url.get(text)
            if res is not None:
                return self._found(t, res, text)
            t.rid = _id_from_url(text)
            return t
        if "?" in text:  # conditional reference: Type?identifier=system|value
            rtype, _, query = text.partition("?")
            t.rtype = rtype or t.rtype
            for part in query.split("&"):
                key, _, val = part.partition("=")
                if key == "identifier" and val:
                    val = unquote(val)
                    system, bar, value = val.rpartition("|")
                    if not bar:
                        system, value = "", val
                    if value:
                        t.ident_system, t.ident_value = system or None, value
                        res = self.index.find_by_identifier(t.rtype or "", system or None, value)
                        if res is not None:
                            return self._found(t, res, None)
            return t
        m = _RESTFUL.match(text)
        if m is None:
            t.rid = _id_from_url(text)
            res = self.index.by_url.get(text)
            return self._found(t, res, text) if res is not None else t
        rtype, rid, base = m.group("type"), m.group("id"), m.group("base")
        t.rtype, t.rid = rtype, rid
        if base:  # absolute
            res = self.index.by_url.get(f"{base}{rtype}/{rid}")
        else:
            res = None
            if self.full_url:
                fm = _RESTFUL.match(self.full_url)
                if fm and fm.group("base"):
                    res = self.index.by_url.get(f"{fm.group('base')}{rtype}/{rid}")
            if res is None:
                res = self.index.by_type_id.get((rtype, rid))
        if res is None:
            res = self.index.by_type_id.get((rtype, rid)) if base else None
        return self._found(t, res, None) if res is not None else t

    @staticmethod
    def _found(t: Target, res: dict[str, Any], url: str | None) -> Target:
        t.resource = res
        t.rtype = s(res.get("resourceType")) or t.rtype
        t.rid = s(res.get("id")) or (t.rid if t.rid else (_id_from_url(url) if url else None))
        return t

    def scope_for(self, target: Target) -> Scope:
        """The scope to read a resolved target in (contained targets share ours)."""
        if target.resource is None or target.contained:
            return self
        return Scope(target.resource, None, self.index)
