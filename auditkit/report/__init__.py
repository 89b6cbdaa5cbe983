"""Reports of an audit: rendering (HTML, PDF, Markdown, JSON, model card), sign-off, integrity, diff."""

from auditkit.report.diff import AuditDiff, diff_audits
from auditkit.report.integrity import VerifyResult, generate_keypair, verify, write_manifest
from auditkit.report.render import FORMATS, render_report, write_report
from auditkit.report.signoff import add_signoff, check_signoffs, load_signoffs

__all__ = [
    "FORMATS",
    "AuditDiff",
    "VerifyResult",
    "add_signoff",
    "check_signoffs",
    "diff_audits",
    "generate_keypair",
    "load_signoffs",
    "render_report",
    "verify",
    "write_manifest",
    "write_report",
]
