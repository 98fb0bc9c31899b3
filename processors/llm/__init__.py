"""The LLM layer's pure core: what may be sent where, what is asked, what is accepted back.

* ``guard.py`` - the PHI guard's rules (allow-list, public AI API hosts, private addresses);
* ``config.py`` - ``LLMSettings`` (``Settings.llm``), validated by the guard at load;
* ``tasks.py`` - tasks, their pydantic output models and the ``cmd.llm`` request payload;
* ``prompts.py`` + ``prompts/<task>/<version>.md`` - versioned prompt files;
* ``validate.py`` - JSON and schema gates, the span check, the result (``LLMResult``);
* ``fallback.py`` - the embedded extractor that answers when the model cannot;
* ``commands.py`` - building ``cmd.llm`` commands and reading their results.

The network side is ``sinks/llm/`` (client, service) and the executor is
``streams/commands/llm.py``; nothing here does I/O except reading prompt files.
"""
