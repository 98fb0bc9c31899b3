"""The EHR write-back, pure part: work items as FHIR Tasks, drafts as their resources, Task
status changes as staff decisions. No network here (``sinks/ehr_fhir.py`` talks to the EHR)."""
