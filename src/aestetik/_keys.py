"""Every name aestetik reads from or writes to an AnnData, built in one place."""

from __future__ import annotations

DEFAULT_KEY = "aestetik"


class Key:
    """Storage names derived from a ``key_added``/``prepare_key``."""

    @staticmethod
    def input(key: str) -> str:
        """``obsm``: min-max scaled transcriptomics + morphology features (n, C), float32."""
        return f"{key}_input"

    @staticmethod
    def lattice(key: str) -> str:
        """``obsm``: integer lattice position (row, col) per spot, int32."""
        return f"{key}_lattice"

    @staticmethod
    def grid(key: str) -> str:
        """``obsm``: neighbourhood window index (n, w*w), int32, -1 where no spot."""
        return f"{key}_grid"

    @staticmethod
    def embedding(key: str) -> str:
        """``obsm``: the learned embedding."""
        return f"X_{key}"

    @staticmethod
    def transcriptomics_cluster(key: str) -> str:
        """``obs``: transcriptomics pseudo-labels."""
        return f"{key}_transcriptomics_cluster"

    @staticmethod
    def morphology_cluster(key: str) -> str:
        """``obs``: morphology pseudo-labels."""
        return f"{key}_morphology_cluster"

    @staticmethod
    def proba(key: str) -> str:
        """``obs``: maximum mixture posterior of the assigned domain."""
        return f"{key}_proba"

    @staticmethod
    def morphology() -> str:
        """``obsm``: morphology representation that ``prepare(morphology_key='auto')`` uses or computes."""
        return "X_morphology"

    @staticmethod
    def transcriptomics_pca() -> str:
        """``obsm``: PCA that ``prepare`` computes when the transcriptomics key is absent."""
        return "X_pca"
