"""A customer-support agent: answers questions about orders with Claude and Redis."""

from __future__ import annotations

import asyncio
import hashlib
from dataclasses import dataclass

import anthropic
import redis.asyncio as redis

MODEL = "claude-sonnet-5"
SYSTEM = "You are the support agent of an online shop. Answer in two sentences."
POLICY_KEY = "policy:returns"
ANSWER_TTL = 3600  # seconds a cached answer stays valid


@dataclass(frozen=True)
class Answer:
    text: str
    from_cache: bool = False


async def _lookup(store: redis.Redis, key: str) -> str:
    value = await store.get(key)
    return value.decode() if value is not None else "unknown"


async def _ask_claude(
    client: anthropic.AsyncAnthropic, question: str, order: str, policy: str
) -> str:
    message = await client.messages.create(
        model=MODEL,
        max_tokens=300,
        system=SYSTEM,
        messages=[{"role": "user", "content": f"Order: {order}\nPolicy: {policy}\n\n{question}"}],
    )
    return "".join(block.text for block in message.content if block.type == "text")


async def answer_naive(
    question: str, order_id: str, *, client: anthropic.AsyncAnthropic, store: redis.Redis
) -> Answer:
    """One lookup after the other, then one API call for every question."""
    order = await _lookup(store, f"order:{order_id}")
    policy = await _lookup(store, POLICY_KEY)
    return Answer(await _ask_claude(client, question, order, policy))


async def answer(
    question: str, order_id: str, *, client: anthropic.AsyncAnthropic, store: redis.Redis
) -> Answer:
    """A repeated question is answered from Redis; otherwise both lookups run at once."""
    key = "answer:" + hashlib.sha256(f"{order_id}\n{question}".encode()).hexdigest()
    cached = await store.get(key)
    if cached is not None:
        return Answer(cached.decode(), from_cache=True)
    order, policy = await asyncio.gather(
        _lookup(store, f"order:{order_id}"), _lookup(store, POLICY_KEY)
    )
    text = await _ask_claude(client, question, order, policy)
    await store.set(key, text, ex=ANSWER_TTL)
    return Answer(text)
