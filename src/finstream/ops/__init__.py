"""Operating the pipeline: the stream's progress as logs and pipeline-metrics documents
(monitoring), and the Kibana dashboards generator (kibana: development only, not shipped to
executors). May import any other finstream package.
"""
