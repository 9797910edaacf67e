"""Local backend: a transformers causal LM from a folder, optionally 4-bit and with a LoRA adapter."""

from __future__ import annotations

import queue
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

from common.types import ChatRequest, Stop, Usage
from backends.base import Backend
from backends.bundled import BUNDLED_MODEL, is_bundled, resolve_model_path
from backends.chat_encoding import encode_chat
from backends.repeats import RepeatGuard
from common.errors import BackendError, BackendTimeout, ConfigurationError, ContextTooLong
from common.extras import LOCAL_BACKEND_PACKAGES, require

if TYPE_CHECKING:
    from common.settings import Settings


@dataclass
class _Loaded:
    model: Any
    tokenizer: Any
    device: str
    max_context: int
    # Token ids that end the assistant's turn: the tokenizer's eos and the template's end-of-turn marker.
    stop_ids: list[int]
    # One generate() at a time per model: sessions share it, and adapter state is not thread-safe.
    lock: threading.Lock


# Used only when a model's tokenizer ships without a chat template (base, not instruction-tuned, models).
FALLBACK_CHAT_TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|>\n{{ m['content'] }}{{ eos_token }}\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)
# Markers chat templates close a turn with (ChatML's <|im_end|>, Llama 3's <|eot_id|>, Phi's <|end|>...).
END_OF_TURN_TOKENS = ("<|im_end|>", "<|eot_id|>", "<|end|>", "<|endoftext|>", "<end_of_turn>")
_CACHE: dict[tuple[str, str, bool], _Loaded] = {}
_CACHE_LOCK = threading.Lock()


def clear_cache() -> None:
    """Forget every loaded model (frees its memory once no backend holds it)."""
    with _CACHE_LOCK:
        _CACHE.clear()


def ensure_chat_template(tokenizer: Any) -> bool:
    """Give a template-less tokenizer a plain role-tagged one; True when it had to."""
    if getattr(tokenizer, "chat_template", None):
        return False
    tokenizer.chat_template = FALLBACK_CHAT_TEMPLATE
    return True


def _load(model_path: str, adapter_path: str, load_in_4bit: bool) -> _Loaded:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    cuda = torch.cuda.is_available()
    kwargs: dict[str, Any] = {}
    if load_in_4bit:
        from transformers import BitsAndBytesConfig

        compute = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        kwargs.update(quantization_config=BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=compute), dtype=compute, device_map={"": torch.cuda.current_device()})
    elif cuda:
        kwargs.update(dtype=torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16,
                      device_map={"": torch.cuda.current_device()})
    else:
        kwargs["dtype"] = torch.float32
    try:
        model = AutoModelForCausalLM.from_pretrained(model_path, **kwargs)
        # The adapter folder carries the tokenizer it was trained with (its chat template included).
        has_own = adapter_path and (Path(adapter_path) / "tokenizer_config.json").is_file()
        tokenizer = AutoTokenizer.from_pretrained(adapter_path if has_own else model_path)
    except OSError as exc:
        raise ConfigurationError(f"Cannot load the local model {model_path!r}: {exc}. Set CHATBOT_LOCAL_MODEL to a "
                                 "model folder (or a hub id already in the local cache).") from exc
    if adapter_path:
        from peft import PeftModel

        try:
            model = PeftModel.from_pretrained(model, adapter_path)
        except (OSError, ValueError) as exc:
            raise ConfigurationError(f"Cannot apply the adapter {adapter_path!r} to {model_path!r}: {exc}") from exc
    model.eval()
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    ensure_chat_template(tokenizer)
    device = "cuda" if (cuda or load_in_4bit) else "cpu"
    return _Loaded(model=model, tokenizer=tokenizer, device=device, max_context=context_length(model.config, tokenizer),
                   stop_ids=stop_token_ids(model, tokenizer), lock=threading.Lock())


def context_length(config: Any, tokenizer: Any = None) -> int:
    """The model's context window in tokens: max_position_embeddings (n_positions for GPT-2 style models)."""
    text = config.get_text_config() if hasattr(config, "get_text_config") else config
    for name in ("max_position_embeddings", "n_positions", "max_sequence_length", "seq_length"):
        value = getattr(text, name, None)
        if isinstance(value, int) and value > 0:
            return value
    limit = getattr(tokenizer, "model_max_length", 0) or 0
    return int(limit) if 0 < limit < 1_000_000 else 4096


def stop_token_ids(model: Any, tokenizer: Any) -> list[int]:
    """Ids that end a turn: the generation config's and tokenizer's eos, and end-of-turn markers in the vocab."""
    ids: set[int] = set()
    configured = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    ids.update(configured if isinstance(configured, list) else [configured])
    ids.add(tokenizer.eos_token_id)
    vocab = tokenizer.get_vocab()
    ids.update(vocab[t] for t in END_OF_TURN_TOKENS if t in vocab)
    return sorted(i for i in ids if isinstance(i, int) and i >= 0 and i != tokenizer.unk_token_id)


def load_cached(model_path: str, adapter_path: str | None = None, load_in_4bit: bool = False) -> _Loaded:
    """The model, tokenizer and device for this combination, loaded once per process."""
    key = (model_path, adapter_path or "", bool(load_in_4bit))
    with _CACHE_LOCK:
        if key not in _CACHE:
            _CACHE[key] = _load(*key)
        return _CACHE[key]


class _Cancelled:
    """A stopping criterion that ends generation once the reader has gone away."""

    def __init__(self) -> None:
        self.event = threading.Event()

    def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> bool:
        return self.event.is_set()


class _ReplyOnly:
    """A logits processor applied to the reply's tokens alone, not the prompt's.

    transformers' repetition penalty and no-repeat n-gram rule look at the whole sequence, prompt
    included: a model told to answer from passages would be pushed away from the passages' own words.
    """

    def __init__(self, processor: Any, prompt_tokens: int) -> None:
        self.processor = processor
        self.prompt_tokens = prompt_tokens

    def __call__(self, input_ids: Any, scores: Any) -> Any:
        return self.processor(input_ids[:, self.prompt_tokens:], scores)


def loop_processors(request: ChatRequest, prompt_tokens: int) -> list[Any]:
    """The request's repetition penalty and no-repeat n-gram size as logits processors over the reply."""
    from transformers import NoRepeatNGramLogitsProcessor, RepetitionPenaltyLogitsProcessor

    processors: list[Any] = []
    if request.repetition_penalty > 1.0:
        processors.append(_ReplyOnly(RepetitionPenaltyLogitsProcessor(request.repetition_penalty), prompt_tokens))
    if request.no_repeat_ngram_size > 0:
        processors.append(_ReplyOnly(NoRepeatNGramLogitsProcessor(request.no_repeat_ngram_size), prompt_tokens))
    return processors


def sampling(request: ChatRequest) -> dict[str, Any]:
    """generate()'s sampling options: greedy at temperature 0, else nucleus sampling (top-p 0.95)."""
    if request.temperature > 0:
        return {"do_sample": True, "temperature": request.temperature, "top_p": 0.95}
    return {"do_sample": False}


class LocalBackend(Backend):
    """A local causal LM (optionally with a fine-tuned adapter), streamed token by token."""

    name = "local"
    is_local = True
    model_choice = "folder"

    # Whether the reply stops before its first repeated sentence (see backends/repeats.py).
    stop_on_repeat = True

    def __init__(self, model_path: str, adapter_path: str | None = None, load_in_4bit: bool = False,
                 timeout: float = 120.0, data_dir: str | Path | None = None):
        # The chat-only install has no torch: say what to install (the chat page falls back to offline).
        require(LOCAL_BACKEND_PACKAGES, "The Local backend")
        if not model_path:
            raise ConfigurationError("Missing setting: set CHATBOT_LOCAL_MODEL to a local model folder, or to "
                                     f"{BUNDLED_MODEL} for the bundled model")
        if is_bundled(model_path):
            # The bundled model by name: converted once into the data directory, a plain folder from then on.
            model_path = resolve_model_path(model_path, data_dir)
        path = Path(model_path).expanduser()
        # A path-looking value that does not exist is a typo, not a hub id.
        if (model_path.startswith((".", "/", "~")) or path.is_absolute()) and not path.is_dir():
            raise ConfigurationError(f"CHATBOT_LOCAL_MODEL: no model folder at {model_path}")
        self.model_path = str(path.resolve()) if path.is_dir() else model_path
        self.adapter_path = None
        if adapter_path:
            adapter = Path(adapter_path).expanduser()
            if not (adapter / "adapter_config.json").is_file():
                raise ConfigurationError(f"CHATBOT_LOCAL_ADAPTER: {adapter_path} is not an adapter folder "
                                         "(no adapter_config.json)")
            self.adapter_path = str(adapter.resolve())
        if load_in_4bit:
            import torch

            if not torch.cuda.is_available():
                raise ConfigurationError("4-bit loading needs a CUDA GPU; none was found. Load the model in full "
                                         "precision instead.")
        self.load_in_4bit = load_in_4bit
        self.timeout = timeout
        self.model = Path(self.model_path).name + (f" + {Path(self.adapter_path).name}" if self.adapter_path else "")
        self._loaded = load_cached(self.model_path, self.adapter_path, load_in_4bit)

    @classmethod
    def from_settings(cls, settings: "Settings", model: str | None = None, **options: Any) -> "LocalBackend":
        """From CHATBOT_LOCAL_MODEL and CHATBOT_LOCAL_ADAPTER; `model`, or the `model_path` option, overrides
        the model path (or names the bundled model, smollm2-135m-instruct)."""
        require(LOCAL_BACKEND_PACKAGES, "The Local backend")  # before asking for a model folder
        # A folder pair picked on the page (model_path, adapter_path) replaces both settings.
        adapter = options.get("adapter_path") or None
        try:
            path = options.get("model_path") or model or settings.require("local_model_path")
        except ConfigurationError as exc:
            raise ConfigurationError(f"{exc} (a model folder, or {BUNDLED_MODEL} for the bundled model)") from exc
        if not options.get("model_path") and not options.get("adapter_path"):
            adapter = settings.local_adapter_path or None
        return cls(path, adapter_path=adapter, data_dir=settings.data_dir)

    @property
    def tokenizer(self) -> Any:
        return self._loaded.tokenizer

    def count_tokens(self, text: str) -> int:
        """Tokens in `text` by the model's own tokenizer, as a message's text is encoded (`encode_chat`):
        a control token typed in it counts as the tokens of its characters."""
        return len(self._loaded.tokenizer(text, add_special_tokens=False, split_special_tokens=True)["input_ids"])

    def _encode(self, request: ChatRequest) -> dict[str, Any]:
        """The prompt's input ids and attention mask; message text never makes a turn (`encode_chat`)."""
        import torch
        from jinja2 import TemplateError

        tokenizer = self._loaded.tokenizer
        messages = [{"role": m["role"], "content": m["content"]} for m in request.messages]
        with_system = ([{"role": "system", "content": request.system}] if request.system else []) + messages
        try:
            ids = encode_chat(tokenizer, with_system)
        except TemplateError:
            # Some templates refuse a system turn: fold it into the first user message instead.
            if messages and request.system:
                messages[0] = {"role": messages[0]["role"], "content": f"{request.system}\n\n{messages[0]['content']}"}
            ids = encode_chat(tokenizer, messages)
        input_ids = torch.tensor([ids], dtype=torch.long)
        return {"input_ids": input_ids, "attention_mask": torch.ones_like(input_ids)}

    def stream(self, request: ChatRequest) -> Iterator[str | Usage]:
        """Generate on a worker thread and yield text as TextIteratorStreamer decodes it."""
        from transformers import LogitsProcessorList, StoppingCriteriaList, TextIteratorStreamer

        loaded = self._loaded
        inputs = self._encode(request)
        n_input = int(inputs["input_ids"].shape[1])
        if n_input >= loaded.max_context:
            raise ContextTooLong(f"The prompt is {n_input} tokens, more than the local model's "
                                 f"{loaded.max_context}-token context; start a new conversation or retrieve fewer "
                                 "passages.", prompt_tokens=n_input, max_context=loaded.max_context)
        # The reply gets what the context has left, and never more than the request's max_tokens.
        max_new = max(1, min(request.max_tokens, loaded.max_context - n_input))
        inputs = {k: v.to(loaded.model.device) for k, v in inputs.items()}
        streamer = TextIteratorStreamer(loaded.tokenizer, skip_prompt=True, skip_special_tokens=True,
                                        timeout=self.timeout)
        cancelled = _Cancelled()
        kwargs: dict[str, Any] = dict(**inputs, max_new_tokens=max_new, streamer=streamer,
                                      stopping_criteria=StoppingCriteriaList([cancelled]),
                                      logits_processor=LogitsProcessorList(loop_processors(request, n_input)),
                                      eos_token_id=loaded.stop_ids or None,
                                      pad_token_id=loaded.tokenizer.pad_token_id, **sampling(request))
        outcome: dict[str, Any] = {}

        def generate() -> None:
            try:
                with loaded.lock:
                    output = loaded.model.generate(**kwargs)
                outcome["output_tokens"] = int(output.shape[1]) - n_input
                last = int(output[0, -1]) if outcome["output_tokens"] else None
                outcome["stop_reason"] = "end_turn" if last in loaded.stop_ids else "max_tokens"
            except Exception as exc:  # handed to the reading thread, which raises it as a BackendError
                outcome["error"] = exc
                streamer.end()

        worker = threading.Thread(target=generate, name="local-generate", daemon=True)
        worker.start()
        guard = RepeatGuard() if self.stop_on_repeat else None
        try:
            for piece in streamer:
                shown = guard.feed(piece) if guard else piece
                if shown:
                    yield shown
                if guard and guard.stopped:
                    break  # the finally below stops the model
            if guard and (rest := guard.finish()):
                yield rest
        except queue.Empty as exc:
            # The streamer's queue timed out: the model produced nothing for `timeout` seconds.
            raise BackendTimeout(f"The local model produced nothing for {self.timeout:.0f} s.") from exc
        finally:
            # A reader that stops early (a closed page) must not leave the model generating.
            cancelled.event.set()
        worker.join(timeout=self.timeout)
        if "error" in outcome:
            raise BackendError(f"The local model failed while generating: {outcome['error']}") from outcome["error"]
        # A reply stopped before a repeated sentence ended where its answer did.
        stop_reason = Stop.END if guard and guard.stopped else outcome.get("stop_reason", "")
        yield Usage(input_tokens=n_input, output_tokens=outcome.get("output_tokens", 0), stop_reason=stop_reason)
