"""ToolWorld's tool catalog: 40 tools in 11 domains, with overlapping name prefixes by design
(`get_paper_details` / `get_papers_by_keywords` / `get_paper_citations`, `search_flights` / `search_flight_status`, ...)
so that PKT's divergence tokens matter, plus value pools and request templates.

Each parameter names a value *kind*; `VALUE_POOLS` draws values of that kind and request templates mention them
verbatim, so a correct call copies them from the request (content filling).
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from tl_lightning.format.schema import ToolParam, ToolSpec


@dataclass(frozen=True)
class ParamDef:
    name: str
    kind: str
    required: bool
    description: str


@dataclass(frozen=True)
class ToolDef:
    """A catalog tool: signature, what it returns (an id kind chained tools consume), and request templates.

    `templates` mention every required parameter as `{name}`; `optional_phrases` map an optional parameter to the
    phrase appended when the request includes it.
    """

    name: str
    description: str
    params: tuple[ParamDef, ...]
    templates: tuple[str, ...]
    optional_phrases: dict
    returns: str = ""

    def spec(self) -> ToolSpec:
        ptype = {"int": "integer", "bool": "boolean", "float": "number"}
        return ToolSpec(self.name, self.description, tuple(
            ToolParam(p.name, ptype.get(VALUE_TYPES.get(p.kind, "str"), "string"), p.description, p.required)
            for p in self.params))


def P(name: str, kind: str, description: str, required: bool = True) -> ParamDef:
    return ParamDef(name, kind, required, description)


CITIES = ["Paris", "Tokyo", "Berlin", "Lima", "Cairo", "Oslo", "Austin", "Seoul", "Madrid", "Nairobi", "Toronto",
          "Sydney", "Mumbai", "Dublin", "Prague", "Denver", "Hanoi", "Lisbon", "Quito", "Zurich"]
KEYWORDS = ["tool learning", "graph neural networks", "protein folding", "reinforcement learning", "speech recognition",
            "quantum error correction", "climate models", "code generation", "federated learning", "retrieval augmentation"]
FIRST = ["Ada", "Bruno", "Chen", "Dana", "Elif", "Farid", "Grace", "Hugo", "Ines", "Jonas", "Keiko", "Luis", "Mira", "Nils"]
LAST = ["Okafor", "Petrov", "Quinn", "Rossi", "Sato", "Tanaka", "Ueda", "Varga", "Weber", "Xu", "Yilmaz", "Zhou"]
PHRASES = ["quarterly budget review", "team offsite plan", "dentist appointment", "project kickoff", "release notes",
           "grant proposal draft", "conference travel", "customer feedback summary", "weekly status update"]
SONGS = ["Blue Horizon", "Paper Moon", "City Lights", "Northern Wind", "Silver Lining", "Golden Hour", "Echo Park"]

VALUE_TYPES = {"limit": "int", "days": "int", "passengers": "int", "nights": "int", "minutes": "int", "amount": "float",
               "radius": "int", "max_words": "int", "max_price": "int", "duration": "int", "public": "bool"}

_POOLS = {
    "city": lambda r: r.choice(CITIES),
    "keyword": lambda r: r.choice(KEYWORDS),
    "venue": lambda r: r.choice(["ICLR", "NeurIPS", "ACL", "EMNLP", "ICML", "CVPR"]),
    "person": lambda r: f"{r.choice(FIRST)} {r.choice(LAST)}",
    "date": lambda r: f"{r.randint(2024, 2026)}-{r.randint(1, 12):02d}-{r.randint(1, 28):02d}",
    "time": lambda r: f"{r.randint(7, 20):02d}:{r.choice(['00', '15', '30', '45'])}",
    "limit": lambda r: r.randint(1, 20), "days": lambda r: r.randint(1, 10), "passengers": lambda r: r.randint(1, 6),
    "nights": lambda r: r.randint(1, 14), "minutes": lambda r: r.choice([5, 10, 15, 30, 60, 120]),
    "amount": lambda r: float(r.randint(10, 5000)), "radius": lambda r: r.choice([200, 500, 1000, 2000, 5000]),
    "max_words": lambda r: r.choice([20, 50, 100, 150]), "max_price": lambda r: r.choice([80, 120, 200, 350]),
    "duration": lambda r: r.choice([15, 30, 45, 60, 90]), "public": lambda r: r.random() < 0.5,
    "currency": lambda r: r.choice(["USD", "EUR", "JPY", "GBP", "CHF", "INR"]),
    "symbol": lambda r: r.choice(["AAPL", "MSFT", "NVDA", "TSLA", "AMZN", "GOOG", "ASML"]),
    "language": lambda r: r.choice(["French", "German", "Japanese", "Spanish", "Swahili", "Korean"]),
    "units": lambda r: r.choice(["metric", "imperial"]),
    "seat_class": lambda r: r.choice(["economy", "business", "first"]),
    "mode": lambda r: r.choice(["driving", "walking", "cycling", "transit"]),
    "place_category": lambda r: r.choice(["restaurant", "pharmacy", "museum", "park", "cafe"]),
    "phrase": lambda r: r.choice(PHRASES),
    "song": lambda r: r.choice(SONGS),
    "email": lambda r: f"{r.choice(FIRST).lower()}.{r.choice(LAST).lower()}@example.com",
    "flight_number": lambda r: f"{r.choice(['LH', 'AF', 'JL', 'UA', 'KL'])}{r.randint(100, 999)}",
    "region": lambda r: r.choice(["Bavaria", "Texas", "Kanto", "Ontario", "Catalonia", "Queensland"]),
    "paper_id": lambda r: f"P-{r.randint(1000, 9999)}", "flight_id": lambda r: f"FL-{r.randint(100, 999)}",
    "hotel_id": lambda r: f"H-{r.randint(10, 99)}", "song_id": lambda r: f"S-{r.randint(100, 999)}",
    "event_id": lambda r: f"E-{r.randint(10, 99)}", "order_id": lambda r: f"O-{r.randint(1000, 9999)}",
    "product": lambda r: r.choice(["usb-c cable", "desk lamp", "running shoes", "coffee grinder", "backpack"]),
}


def draw_value(kind: str, rng: random.Random):
    return _POOLS[kind](rng)


TOOLS: tuple[ToolDef, ...] = (
    ToolDef("get_paper_details", "Get the details of a paper by its id.",
            (P("paper_id", "paper_id", "The paper id."), P("fields", "keyword", "Fields to return.", False)),
            ("Show me the details of paper {paper_id}.", "What is paper {paper_id} about?"),
            {"fields": " Only the {fields} part."}),
    ToolDef("get_papers_by_keywords", "Search papers by keywords.",
            (P("query", "keyword", "The search keywords."), P("venue", "venue", "Conference venue.", False),
             P("limit", "limit", "Maximum number of papers.", False)),
            ("Find papers about {query}.", "I need recent work on {query}."),
            {"venue": " Only from {venue}.", "limit": " At most {limit} results."}, returns="paper_id"),
    ToolDef("get_paper_citations", "List the papers citing a paper.",
            (P("paper_id", "paper_id", "The paper id."), P("limit", "limit", "Maximum number of citations.", False)),
            ("Who cites paper {paper_id}?", "List the citations of {paper_id}."), {"limit": " Give me {limit} of them."}),
    ToolDef("get_author_profile", "Get an author's profile.", (P("author_name", "person", "Full name."),),
            ("Look up the researcher {author_name}.",), {}),
    ToolDef("get_weather_current", "Current weather in a city.",
            (P("city", "city", "City name."), P("units", "units", "metric or imperial.", False)),
            ("What's the weather in {city} right now?", "Is it cold in {city} at the moment?"), {"units": " Use {units} units."}),
    ToolDef("get_weather_forecast", "Weather forecast for the next days.",
            (P("city", "city", "City name."), P("days", "days", "Number of days."), P("units", "units", "metric or imperial.", False)),
            ("Give me the {days}-day forecast for {city}.", "What will the weather be in {city} over the next {days} days?"),
            {"units": " In {units} units please."}),
    ToolDef("get_weather_alerts", "Active weather alerts for a region.", (P("region", "region", "Region name."),),
            ("Are there any weather warnings in {region}?",), {}),
    ToolDef("search_flights", "Search flights between two cities on a date.",
            (P("origin", "city", "Departure city."), P("destination", "city", "Arrival city."), P("date", "date", "YYYY-MM-DD."),
             P("passengers", "passengers", "Number of passengers.", False)),
            ("Find flights from {origin} to {destination} on {date}.", "I want to fly {origin} to {destination} on {date}."),
            {"passengers": " We are {passengers} people."}, returns="flight_id"),
    ToolDef("search_flight_status", "Status of a flight.",
            (P("flight_number", "flight_number", "Flight number."), P("date", "date", "YYYY-MM-DD.", False)),
            ("Is flight {flight_number} on time?", "What's the status of {flight_number}?"), {"date": " It departs on {date}."}),
    ToolDef("book_flight", "Book a flight found by search_flights.",
            (P("flight_id", "flight_id", "Flight id from search."), P("passenger_name", "person", "Passenger's name."),
             P("seat_class", "seat_class", "economy, business or first.", False)),
            ("Book flight {flight_id} for {passenger_name}.",), {"seat_class": " In {seat_class} class."}),
    ToolDef("search_hotels", "Search hotels in a city.",
            (P("city", "city", "City name."), P("check_in", "date", "YYYY-MM-DD."), P("nights", "nights", "Number of nights."),
             P("max_price", "max_price", "Max price per night.", False)),
            ("Find a hotel in {city} from {check_in} for {nights} nights.",), {"max_price": " Under {max_price} per night."},
            returns="hotel_id"),
    ToolDef("search_hotel_reviews", "Reviews of a hotel.",
            (P("hotel_id", "hotel_id", "Hotel id."), P("limit", "limit", "Number of reviews.", False)),
            ("What do guests say about hotel {hotel_id}?",), {"limit": " Show {limit} reviews."}),
    ToolDef("book_hotel", "Book a hotel room.",
            (P("hotel_id", "hotel_id", "Hotel id."), P("guest_name", "person", "Guest name."), P("nights", "nights", "Nights.")),
            ("Book hotel {hotel_id} for {guest_name}, {nights} nights.",), {}),
    ToolDef("get_stock_price", "Latest price of a stock.", (P("symbol", "symbol", "Ticker symbol."),),
            ("What is {symbol} trading at?", "Current price of {symbol}?"), {}),
    ToolDef("get_stock_history", "Daily prices of a stock between two dates.",
            (P("symbol", "symbol", "Ticker symbol."), P("start_date", "date", "YYYY-MM-DD."), P("end_date", "date", "YYYY-MM-DD.")),
            ("Show {symbol} prices from {start_date} to {end_date}.",), {}),
    ToolDef("convert_currency", "Convert an amount between currencies.",
            (P("amount", "amount", "Amount."), P("from_currency", "currency", "Source currency."),
             P("to_currency", "currency", "Target currency.")),
            ("Convert {amount} {from_currency} to {to_currency}.", "How much is {amount} {from_currency} in {to_currency}?"), {}),
    ToolDef("get_exchange_rate", "Exchange rate between two currencies.",
            (P("base", "currency", "Base currency."), P("target", "currency", "Target currency.")),
            ("What's the {base} to {target} exchange rate?",), {}),
    ToolDef("search_songs", "Search songs by title.",
            (P("title", "song", "Song title."), P("artist", "person", "Artist name.", False)),
            ("Find the song {title}.", "Search for {title}."), {"artist": " It's by {artist}."}, returns="song_id"),
    ToolDef("search_songs_by_artist", "List songs of an artist.",
            (P("artist", "person", "Artist name."), P("limit", "limit", "Number of songs.", False)),
            ("What songs has {artist} released?",), {"limit": " Top {limit} only."}),
    ToolDef("get_song_lyrics", "Lyrics of a song by id.", (P("song_id", "song_id", "Song id."),),
            ("Show me the lyrics of {song_id}.",), {}),
    ToolDef("create_playlist", "Create a playlist.",
            (P("name", "phrase", "Playlist name."), P("public", "public", "Whether it is public.", False)),
            ("Create a playlist called {name}.",), {"public": " Public: {public}."}),
    ToolDef("create_event", "Create a calendar event.",
            (P("title", "phrase", "Event title."), P("date", "date", "YYYY-MM-DD."), P("time", "time", "HH:MM.", False),
             P("duration_minutes", "duration", "Duration in minutes.", False)),
            ("Put {title} on my calendar on {date}.", "Schedule {title} for {date}."),
            {"time": " At {time}.", "duration_minutes": " It lasts {duration_minutes} minutes."}, returns="event_id"),
    ToolDef("create_event_reminder", "Add a reminder to an event.",
            (P("event_id", "event_id", "Event id."), P("minutes_before", "minutes", "Minutes before the event.")),
            ("Remind me {minutes_before} minutes before event {event_id}.",), {}),
    ToolDef("list_events", "List the events on a date.", (P("date", "date", "YYYY-MM-DD."),),
            ("What's on my calendar on {date}?",), {}),
    ToolDef("delete_event", "Delete an event.", (P("event_id", "event_id", "Event id."),), ("Cancel event {event_id}.",), {}),
    ToolDef("translate_text", "Translate text.",
            (P("text", "phrase", "Text to translate."), P("target_language", "language", "Target language."),
             P("source_language", "language", "Source language.", False)),
            ("Translate '{text}' into {target_language}.",), {"source_language": " The text is in {source_language}."}),
    ToolDef("summarize_text", "Summarize a text.",
            (P("text", "phrase", "Text to summarize."), P("max_words", "max_words", "Word limit.", False)),
            ("Summarize the {text}.",), {"max_words": " Keep it under {max_words} words."}),
    ToolDef("get_directions", "Route between two places.",
            (P("origin", "city", "Start."), P("destination", "city", "End."), P("mode", "mode", "Travel mode.", False)),
            ("How do I get from {origin} to {destination}?",), {"mode": " I'm {mode}."}),
    ToolDef("get_distance", "Distance between two places.",
            (P("origin", "city", "Start."), P("destination", "city", "End.")), ("How far is {origin} from {destination}?",), {}),
    ToolDef("get_places_nearby", "Places of a category near a location.",
            (P("location", "city", "Location."), P("category", "place_category", "Place category."),
             P("radius", "radius", "Radius in meters.", False)),
            ("Find a {category} near {location}.",), {"radius": " Within {radius} meters."}),
    ToolDef("send_email", "Send an email.",
            (P("to", "email", "Recipient."), P("subject", "phrase", "Subject."), P("body", "phrase", "Body text.")),
            ("Email {to} about the {subject}, saying: {body}.",), {}),
    ToolDef("send_email_with_attachment", "Send an email with an attachment.",
            (P("to", "email", "Recipient."), P("subject", "phrase", "Subject."), P("attachment", "phrase", "File name.")),
            ("Send {to} the {attachment} file with subject {subject}.",), {}),
    ToolDef("get_order_status", "Status of a shop order.", (P("order_id", "order_id", "Order id."),),
            ("Where is my order {order_id}?",), {}),
    ToolDef("get_order_history", "Past orders of a customer.",
            (P("customer_email", "email", "Customer email."), P("limit", "limit", "Number of orders.", False)),
            ("Show the orders of {customer_email}.",), {"limit": " The last {limit}."}),
    ToolDef("search_products", "Search the shop catalog.",
            (P("query", "product", "What to search for."), P("max_price", "max_price", "Max price.", False)),
            ("Do you sell a {query}?",), {"max_price": " Budget {max_price}."}),
)

FINISH = ToolDef("finish", "Finish the task and give your answer.", (P("answer", "phrase", "Your answer for the task."),), (), {})
ASK_TO_USER = ToolDef("ask_to_user", "Ask the user for missing information.",
                      (P("question", "phrase", "The question to the user."),), (), {})
TOOLS_BY_NAME = {t.name: t for t in TOOLS + (FINISH, ASK_TO_USER)}

CHAINS = {"get_papers_by_keywords": ("get_paper_details", "get_paper_citations"), "search_flights": ("book_flight",),
          "search_hotels": ("book_hotel", "search_hotel_reviews"), "search_songs": ("get_song_lyrics",),
          "create_event": ("create_event_reminder",)}
"""Tools whose output id (ToolDef.returns) a follow-up tool consumes: multi-step trajectories."""
