"""Seeded reranking workloads: queries and documents of controlled token lengths.

The text is synthetic but shaped like retrieval data (sentences of ordinary
words in several languages, numbers, punctuation), so the real Qwen3 tokenizer
turns it into realistic token counts: about 60 % English and the rest German,
French, Spanish, Russian, Chinese and Japanese. Lengths are measured with the
tokenizer the models use, so "~300 tokens" means 300 Qwen3 tokens.

Nothing here needs torch; a tokenizer (anything with ``__call__`` returning
``{"input_ids": [...]}``) is passed in.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "CALLERS",
    "CONCURRENCY",
    "WORKLOADS",
    "Workload",
    "WorkloadSpec",
    "make_workload",
    "token_stats",
]


def _bank(text: str) -> tuple[str, ...]:
    return tuple(text.split())


_EN = _bank(
    "the system data model search result query document user time year city water energy "
    "market policy health research report study group company service network support "
    "country government river mountain history language music science school student teacher "
    "price value rate level growth change problem question answer process method design "
    "product quality customer project team information page table figure section analysis "
    "temperature pressure protein cell gene patient treatment disease risk effect sample "
    "engine vehicle road bridge train station airport flight hotel museum library garden "
    "is was are has have will can may should provides includes shows uses requires reduces "
    "increases describes contains supports improves allows compares measures explains "
    "new large small important different local national public early recent main common "
    "high low open free simple complex modern ancient digital physical annual average "
    "in of for with on by from at about between after during under within across through"
)
_DE = _bank(
    "der die das und ist mit von für auf eine einer Stadt Wasser Bericht Forschung Gesundheit "
    "Unternehmen Regierung Fluss Geschichte Sprache Schule Preis Wert Entwicklung Ergebnis "
    "Frage Antwort Verfahren Kunde Projekt wurde werden kann zeigt enthält beschreibt neue "
    "große kleine wichtige öffentliche moderne zwischen nach während unter"
)
_FR = _bank(
    "le la les et est avec pour dans une des ville eau rapport recherche santé entreprise "
    "gouvernement rivière histoire langue école prix valeur développement résultat question "
    "réponse méthode client projet été peut montre contient décrit nouvelle grande petite "
    "importante publique moderne entre après pendant sous"
)
_ES = _bank(
    "el la los las y es con para en una del ciudad agua informe investigación salud empresa "
    "gobierno río historia idioma escuela precio valor desarrollo resultado pregunta respuesta "
    "método cliente proyecto fue puede muestra contiene describe nueva grande pequeña "
    "importante pública moderna entre después durante bajo"
)
_RU = _bank(
    "город вода отчет исследование здоровье компания правительство река история язык школа "
    "цена значение развитие результат вопрос ответ метод клиент проект был может показывает "
    "содержит описывает новый большой малый важный общественный современный между после во "
    "время под и в на с для"
)
_ZH = _bank(
    "城市 水 报告 研究 健康 公司 政府 河流 历史 语言 学校 价格 价值 发展 结果 问题 答案 方法 客户 项目 "
    "数据 模型 系统 网络 服务 市场 能源 技术 科学 教育 文化 经济 社会 环境 人口 地区 国家 国际 "
    "是 的 在 和 有 了 可以 显示 包括 描述 新的 大 小 重要 公共 现代 之间 之后 期间"
)
_JA = _bank(
    "都市 水 報告 研究 健康 会社 政府 川 歴史 言語 学校 価格 価値 開発 結果 質問 回答 方法 顧客 "
    "データ モデル システム ネットワーク サービス 市場 エネルギー 技術 科学 教育 文化 経済 "
    "は が を に で と の です ます した される 新しい 大きい 小さい 重要な 公共の 現代の"
)

#: (weight, word bank, word separator, sentence end).
_LANGUAGES: tuple[tuple[float, Sequence[str], str, str], ...] = (
    (0.60, _EN, " ", "."),
    (0.08, _DE, " ", "."),
    (0.08, _FR, " ", "."),
    (0.07, _ES, " ", "."),
    (0.06, _RU, " ", "."),
    (0.06, _ZH, "", "。"),
    (0.05, _JA, "", "。"),
)


def _language(rng: random.Random) -> tuple[Sequence[str], str, str]:
    x = rng.random()
    for weight, words, sep, end in _LANGUAGES:
        if x < weight:
            return words, sep, end
        x -= weight
    return _LANGUAGES[0][1:]


def _sentence(rng: random.Random, words: Sequence[str], sep: str, end: str) -> str:
    n = rng.randint(6, 22)
    parts = [rng.choice(words) for _ in range(n)]
    if rng.random() < 0.3:
        parts.insert(rng.randrange(len(parts)), str(rng.randint(1, 2030)))
    if sep == " " and rng.random() < 0.25:
        parts[rng.randrange(len(parts))] += ","
    text = sep.join(parts)
    if sep == " ":
        text = text[0].upper() + text[1:]
    return text + end


def _query(rng: random.Random) -> str:
    words, sep, _ = _language(rng)
    parts = [rng.choice(words) for _ in range(rng.randint(4, 12))]
    text = sep.join(parts)
    return (text[0].upper() + text[1:] if sep == " " else text) + ("?" if sep == " " else "？")


CountFn = Callable[[list[str]], list[int]]


def _document(rng: random.Random, target: int, count: CountFn) -> str:
    """A paragraph of at most (and close to) ``target`` tokens, in one language."""
    words, sep, end = _language(rng)
    joiner = " " if sep == " " else ""
    sentences: list[str] = []
    total = 0
    while total < target:
        batch = [_sentence(rng, words, sep, end) for _ in range(max(4, (target - total) // 12))]
        for sentence, n in zip(batch, count(batch), strict=True):
            if total + n > target:
                # Cut the last sentence to what is left (by words; CJK: by characters).
                pieces = sentence.split(" ") if sep == " " else list(sentence)
                while (
                    pieces
                    and count([joiner.join([*sentences[-1:], sep.join(pieces)])])[0]
                    - (count(sentences[-1:])[0] if sentences else 0)
                    > target - total
                ):
                    pieces.pop()
                if pieces:
                    sentences.append(sep.join(pieces))
                total = target
                break
            sentences.append(sentence)
            total += n
    text = joiner.join(sentences)
    # Joining can merge or split a token at the seams; trim until the hard limit holds.
    while count([text])[0] > target and (" " in text if sep == " " else len(text) > 1):
        text = text.rsplit(" ", 1)[0] if sep == " " else text[:-1]
    return text


@dataclass(frozen=True)
class WorkloadSpec:
    """A workload shape: ``n_queries`` x ``docs_per_query`` documents of a token range."""

    name: str
    description: str
    n_queries: int
    docs_per_query: int
    doc_tokens: tuple[int, int]
    max_length: int = 8192


#: The workloads of the performance issue, by short name.
WORKLOADS: dict[str, WorkloadSpec] = {
    "a": WorkloadSpec("a", "1 query x 100 docs of ~300 tokens", 1, 100, (250, 350)),
    "b": WorkloadSpec("b", "1 query x 100 docs of <= 64 tokens", 1, 100, (16, 64)),
    "c": WorkloadSpec("c", "8 queries x 50 docs of ~300 tokens", 8, 50, (250, 350)),
    "d": WorkloadSpec("d", "1 query x 20 docs of ~8k tokens", 1, 20, (7600, 8000), 8192),
    # Many callers (issue #22): one ``score`` call per query, from 1, 8 and 16 concurrent
    # callers (threads and asyncio), against one ``score_many`` (benchmarks/concurrency.py).
    "e": WorkloadSpec(
        "e", "16 queries x 10 docs of ~300 tokens, one call per query", 16, 10, (250, 350)
    ),
    "f": WorkloadSpec(
        "f", "16 queries x 10 docs of <= 64 tokens, one call per query", 16, 10, (16, 64)
    ),
    "g": WorkloadSpec(
        "g", "16 queries x 1 doc of <= 64 tokens, one call per query", 16, 1, (16, 64)
    ),
}
#: The workloads timed by concurrent callers of our reranker, not by the contenders.
CONCURRENCY = ("e", "f", "g")
#: Numbers of concurrent callers of the concurrency workloads.
CALLERS = (1, 8, 16)


@dataclass
class Workload:
    """Concrete queries and documents of one :class:`WorkloadSpec` (JSON-serialisable)."""

    name: str
    description: str
    max_length: int
    items: list[tuple[str, list[str]]] = field(default_factory=list)

    @property
    def n_docs(self) -> int:
        return sum(len(docs) for _, docs in self.items)

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "description": self.description,
            "max_length": self.max_length,
            "items": [[q, list(d)] for q, d in self.items],
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Workload:
        return cls(
            name=data["name"],
            description=data["description"],
            max_length=int(data["max_length"]),
            items=[(q, list(d)) for q, d in data["items"]],
        )


def make_workload(
    spec: WorkloadSpec,
    tokenizer: Any,
    *,
    seed: int = 0,
    docs_scale: float = 1.0,
    length_scale: float = 1.0,
) -> Workload:
    """Generate ``spec``'s texts, seeded; ``docs_scale`` / ``length_scale`` shrink it.

    Document counts become ``max(1, round(docs_per_query * docs_scale))`` and
    token targets ``max(4, round(t * length_scale))``; the number of queries
    stays as specified.
    """

    def count(texts: list[str]) -> list[int]:
        ids = tokenizer(texts, add_special_tokens=False)["input_ids"]
        return [len(x) for x in ids]

    rng = random.Random(f"{seed}-{spec.name}")
    n_docs = max(1, round(spec.docs_per_query * docs_scale))
    lo, hi = (max(4, round(t * length_scale)) for t in spec.doc_tokens)
    items = []
    for _ in range(spec.n_queries):
        query = _query(rng)
        docs = [_document(rng, rng.randint(lo, hi), count) for _ in range(n_docs)]
        items.append((query, docs))
    desc = spec.description
    if docs_scale != 1.0 or length_scale != 1.0:
        desc += f" (scaled: {n_docs} docs/query, {lo}-{hi} tokens)"
    return Workload(spec.name, desc, spec.max_length, items)


def token_stats(workload: Workload, tokenizer: Any) -> dict[str, float]:
    """Min / mean / max document length in tokens (for the report)."""
    docs = [d for _, ds in workload.items for d in ds]
    lengths = [len(x) for x in tokenizer(docs, add_special_tokens=False)["input_ids"]]
    return {
        "min": float(min(lengths)),
        "mean": math.fsum(lengths) / len(lengths),
        "max": float(max(lengths)),
    }


def max_abs_diff(
    scores: Sequence[Sequence[float]], reference: Sequence[Sequence[float]] | None
) -> float | None:
    """Largest ``|score - reference|`` over a workload's groups of scores (``None``
    without a reference; ``inf`` when the two hold different numbers of scores)."""
    if reference is None:
        return None
    flat = [x for group in scores for x in group]
    flat_ref = [x for group in reference for x in group]
    if len(flat) != len(flat_ref):
        return math.inf
    return max((abs(a - b) for a, b in zip(flat, flat_ref, strict=True)), default=0.0)
