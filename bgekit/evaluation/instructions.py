"""Per-dataset query instructions (``--use_special_instructions``): the published task instructions, kept
verbatim because the scores depend on the exact text."""

BEIR = {
    'dbpedia-entity': 'Given a query, retrieve relevant entity descriptions from DBPedia.',
    'arguana': 'Given a claim, find documents that refute the claim.',
    'climate-fever': 'Given a claim about climate change, retrieve documents that support or refute the claim.',
    'cqadupstack': 'Given a question, retrieve detailed question descriptions from Stackexchange that are duplicates to the given question.',
    'fever': 'Given a claim, retrieve documents that support or refute the claim.',
    'fiqa': 'Given a financial question, retrieve user replies that best answer the question.',
    'hotpotqa': 'Given a multi-hop question, retrieve documents that can help answer the question.',
    'msmarco': 'Given a web search query, retrieve relevant passages that answer the query.',
    'nfcorpus': 'Given a question, retrieve relevant documents that best answer the question.',
    'nq': 'Given a question, retrieve Wikipedia passages that answer the question.',
    'quora': 'Given a question, retrieve questions that are semantically equivalent to the given question.',
    'scidocs': 'Given a scientific paper title, retrieve paper abstracts that are cited by the given paper.',
    'scifact': 'Given a scientific claim, retrieve documents that support or refute the claim.',
    'webis-touche2020': 'Given a question, retrieve detailed and persuasive arguments that answer the question.',
    'trec-covid': 'Given a query on COVID-19, retrieve documents that answer the query.',
}

BRIGHT_SHORT = {
    'biology': 'Given a Biology post, retrieve relevant passages that help answer the post.',
    'earth_science': 'Given an Earth Science post, retrieve relevant passages that help answer the post.',
    'economics': 'Given an Economics post, retrieve relevant passages that help answer the post.',
    'psychology': 'Given a Psychology post, retrieve relevant passages that help answer the post.',
    'robotics': 'Given a Robotics post, retrieve relevant passages that help answer the post.',
    'stackoverflow': 'Given a Stack Overflow post, retrieve relevant passages that help answer the post.',
    'sustainable_living': 'Given a Sustainable Living post, retrieve relevant passages that help answer the post.',
    'leetcode': 'Given a Coding problem, retrieve relevant examples that help answer the problem.',
    'pony': 'Given a Pony question, retrieve relevant passages that help answer the question.',
    'aops': 'Given a Math problem, retrieve relevant examples that help answer the problem.',
    'theoremqa_questions': 'Given a Math problem, retrieve relevant examples that help answer the problem.',
    'theoremqa_theorems': 'Given a Math problem, retrieve relevant theorems that help answer the problem.',
}
